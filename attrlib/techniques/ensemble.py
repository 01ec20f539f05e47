"""An ensemble chosen on the validation subclass: the `k` arms that score best on a rotation's validation subclass
(rule (b)'s ranking, `evaluation.ranked_arms`), their per-image probabilities averaged. Ensemble selection from a
library of trained models on held-out validation data (Caruana, Niculescu-Mizil, Crew & Ksikes, "Ensemble Selection
from Libraries of Models", ICML 2004; in domain generalisation, averaging instead of picking one model: Arpit et al.,
"Ensemble of Averages", NeurIPS 2022). Rule (b) picks one arm on a validation subclass of a few dozen images;
averaging its k best spreads that bet.

Nothing is trained: the sweep assembles the run (`assembled`) from its `members`, finished run folders named
"<technique>/<run id>" under the same runs folder (one rotation, one seed each), into one predictions.csv whose
p_<generator> is the mean of the members' probabilities and whose prediction is its argmax, scored as one run.
Notebook 11 (`attrlib.study.closing.ensemble_runs`) names the members, per rotation and seed, from rule (b)'s
scores; the test subclass never enters the choice. No single model stands behind it, so the notebooks that load a
technique's model (CAMs, robustness) leave it out.
"""
from ..errors import ConfigError
from . import register
from .base import Technique


@register("ensemble")
class Ensemble(Technique):
    description = ("the k arms best on the validation subclass (rule (b)'s ranking), their probabilities averaged "
                   "(ensemble selection, Caruana et al. 2004); assembled from finished runs, nothing trained")
    defaults = {"members": []}  # "<technique>/<run id>" of each member, best first
    search_space = {}
    assembled = True

    @classmethod
    def check_params(cls, params) -> None:
        super().check_params(params)
        members = params.get("members", cls.defaults["members"])
        if (not isinstance(members, (list, tuple)) or not members
                or not all(isinstance(m, str) and m.count("/") == 1 for m in members)
                or len(set(members)) < len(members)):
            raise ConfigError(f"technique parameter 'members' of 'ensemble' is {members!r}; it must be a non-empty "
                              "list of distinct finished run folders as '<technique>/<run id>' under the runs folder")
