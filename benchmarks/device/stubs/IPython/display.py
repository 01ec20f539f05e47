"""Device stub: display prints what a notebook would show (Markdown text, a table as text)."""
class Markdown:
    def __init__(self, data=""):
        self.data = data
    def __repr__(self):
        return str(self.data)
class HTML(Markdown):
    pass
class Image(Markdown):
    def __init__(self, data=None, filename=None, **kw):
        self.data = f"<image {filename or ''}>"
def display(*objs, **kw):
    for o in objs:
        try:
            import pandas as pd
            if isinstance(o, pd.DataFrame):
                print(o.to_string(max_rows=60, max_cols=30), flush=True)
                continue
        except Exception:
            pass
        print(repr(o)[:4000], flush=True)
