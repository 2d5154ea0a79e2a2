"""dmpo_core: backend-neutral contracts and the DMPO objective.

Imports torch, attrs and pluggy only. Shapes follow docs/concepts.md: ``B`` prompts, ``G``
completions per prompt (rows prompt-major ``[B*G]``), ``R`` masking replicates, ``P``
prompt length, ``L`` completion length, ``V`` vocabulary.
"""

from dmpo_core import distribution
from dmpo_core.hookspecs import hookimpl, hookspec
from dmpo_core.registry import Registry, build_registry, get_registry

__version__ = distribution.version()

__all__ = ["Registry", "__version__", "build_registry", "get_registry", "hookimpl", "hookspec"]
