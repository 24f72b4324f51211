"""Label quality: agreement, consolidation and the crowd-kit style table API.

`MajorityVote` and `DawidSkene` here take a pandas or Arrow table of `item, annotator, label`
rows (`fit`, `fit_predict`, `fit_predict_proba`); the array engines they wrap live in
`labelloop.quality.consolidation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labelloop.quality.api import DawidSkene, MajorityVote

__all__ = ["DawidSkene", "MajorityVote"]


def __getattr__(name: str) -> Any:
    # Lazy: the readers import the array engines from this package, and the API imports them.
    if name in __all__:
        from labelloop.quality import api

        return getattr(api, name)
    raise AttributeError(name)
