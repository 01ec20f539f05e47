"""attrlib: generator attribution under biased training data.

`import attrlib` stays light; `attrlib.session` (a notebook's resolved parameters, `attrlib.study.session`)
and `attrlib.predict` (attribute new images with a trained run or a finished study's selected model,
`attrlib.study.selected`) are loaded on first use.
"""
from importlib import import_module


def __getattr__(name: str):
    if name == "session":  # PEP 562: the study layer (torch, papermill) loads only when a notebook asks for it
        return import_module(".study", __name__).session
    if name == "predict":
        return import_module(".study.selected", __name__).predict
    raise AttributeError(f"module 'attrlib' has no attribute {name!r}")
