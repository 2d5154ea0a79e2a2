"""The component registry, filled by plugins through pluggy hooks.

Built-in components (this distribution's own backends, tasks, samplers,
weightings ...) and third-party ones are registered the same way: modules listed in the
entry-point group ``dmpo`` implement ``register_<things>(register)`` hooks. Loading is
lazy (on the first :func:`get_registry`) and idempotent. A plugin that fails to import or
to register is reported by name and does not take the others down.

The environment variable ``DMPO_PLUGINS`` (comma-separated entry-point names) restricts
which third-party plugins load; this distribution's own (``dllm-dmpo``) always load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from dmpo_core import distribution, hookspecs
from dmpo_core.config import build_config
from dmpo_core.errors import ConfigError, DuplicateNameError, InvalidArgumentError, UnknownNameError

ENTRY_POINT_GROUP = "dmpo"
ENV_RESTRICT = "DMPO_PLUGINS"
OWN_DISTRIBUTION = distribution.NAME

#: The built-in plugins, ``(entry-point name, module)``, loaded directly (before any entry
#: point) so that a checkout whose distribution metadata is missing or stale still has every
#: built-in component, and a third-party plugin can never take a built-in's name. They are
#: also this distribution's entry points (pyproject.toml); a meta-test keeps the two equal.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core", "dmpo_core.builtin"),
    ("samplers", "dmpo_core.samplers"),
    ("llada", "dmpo.backends.llada"),
    ("dream", "dmpo.backends.dream"),
    ("engines", "dmpo.backends.engines"),
    ("rewards", "dmpo.tasks.rewards"),
    ("sudoku", "dmpo.tasks.sudoku"),
    ("countdown", "dmpo.tasks.countdown"),
    ("gsm8k", "dmpo.tasks.gsm8k"),
    ("math500", "dmpo.tasks.math500"),
)

#: kind -> hook that registers it. Every hook spec appears here (a meta-test checks it).
HOOKS: dict[str, str] = {
    "backend": "register_backends",
    "engine": "register_engines",
    "sampler": "register_samplers",
    "task": "register_tasks",
    "reward": "register_rewards",
    "weighting": "register_weightings",
    "objective": "register_objectives",
    "command": "register_commands",
}


@attrs.frozen(kw_only=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    """Name of the plugin that registered it."""
    help: str = ""
    aliases: tuple[str, ...] = ()
    options: type | None = None
    """Frozen attrs class of the component's options (None: the factory checks its own keywords)."""
    fixed: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    """Options that the registered name fixes (``dmpo`` fixes ``baseline: negative``)."""
    resolve_model: Callable[[str], str] | None = None
    """Backends only: maps the user's model string to what the factory loads, raising a typed
    error for one that cannot exist (e.g. an unknown ``builtin:NAME``) before anything loads."""
    recommended_config: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None
    """A training config the component recommends (nested keys, as in a YAML file), or for a
    backend ``fn(model) -> config`` for the model it loads; ``dmpo train`` layers it under the
    user's config file and flags (see :meth:`recommended`)."""

    def recommended(self, model: str = "") -> dict[str, Any]:
        """The recommended training config for ``model`` ({} when the component has none)."""
        rc = self.recommended_config
        found = rc(model) if callable(rc) else rc
        if found is None:
            return {}
        if not isinstance(found, Mapping):
            raise InvalidArgumentError("recommended_config", found,
                                       f"{self.kind} {self.name!r}: return a mapping of config keys")
        return dict(found)

    def option_fields(self) -> dict[str, attrs.Attribute]:
        """The options a user may set, by name (the fixed ones excluded); {} without an options class."""
        if self.options is None:
            return {}
        return {f.name: f for f in attrs.fields(self.options) if f.name not in self.fixed and f.init}


@attrs.define
class PluginReport:
    """What happened while loading plugins."""

    loaded: list[str] = attrs.field(factory=list)
    """Plugins that registered successfully, in load order."""
    failed: dict[str, str] = attrs.field(factory=dict)
    """Plugin name -> one-line reason, for plugins that failed to import or register."""


class Registry:
    """Components of every kind, looked up by name or alias."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in HOOKS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in HOOKS}
        self.report = PluginReport()

    def add(self, entry: Entry) -> None:
        """Add ``entry``; a name or alias already taken for its kind is a DuplicateNameError."""
        if entry.kind not in HOOKS:
            raise InvalidArgumentError("kind", entry.kind, f"use one of {', '.join(HOOKS)}")
        taken = self._aliases[entry.kind]
        for name in (entry.name, *entry.aliases):
            if name in taken:
                other = self._entries[entry.kind][taken[name]]
                raise DuplicateNameError(entry.kind, name, other.plugin, entry.plugin)
        self._entries[entry.kind][entry.name] = entry
        for name in (entry.name, *entry.aliases):
            taken[name] = entry.name

    def get(self, kind: str, name: str) -> Entry:
        """The entry of ``kind`` registered as ``name``; UnknownNameError lists the available names."""
        if kind not in HOOKS:
            raise InvalidArgumentError("kind", kind, f"use one of {', '.join(HOOKS)}")
        canonical = self._aliases[kind].get(name)
        if canonical is None:
            raise UnknownNameError(kind, name, self.names(kind))
        return self._entries[kind][canonical]

    def validate(self, kind: str, name: str, options: Mapping[str, Any] | None, *, path: str = "") -> dict[str, Any]:
        """Check ``options`` of component ``name`` against its options class; return the keyword
        arguments of its factory (the fixed options included).

        Every problem is reported at once, each with its full dotted ``path`` (e.g.
        ``weighting.options.alpha=-1: must be >= 0``), before anything is built.

        Raises:
            UnknownNameError: no such component.
            ConfigError: unknown, mistyped or invalid options, or an option the name fixes.
        """
        return self._check(kind, name, options, path)[1]

    def _check(self, kind: str, name: str, options: Mapping[str, Any] | None,
               path: str) -> tuple[Any, dict[str, Any]]:
        """:meth:`validate`, also returning the built options instance (None without an options class)."""
        entry = self.get(kind, name)
        values = dict(options or {})
        prefix = f"{path}." if path else ""
        problems = [
            f"{prefix}{key}={values[key]!r}: fixed to {value!r} by the name {entry.name!r}; "
            f"choose another {kind} name instead (dmpo plugins --kind {kind})"
            for key, value in entry.fixed.items() if key in values
        ]
        if problems:
            raise ConfigError(problems, source=f"{kind} {entry.name!r} options")
        if entry.options is None:
            return None, values
        built = build_config(entry.options, {**values, **entry.fixed}, source=f"{kind} {entry.name!r} options",
                             prefix=prefix)
        return built, {f.name: getattr(built, f.name) for f in attrs.fields(entry.options) if f.init}

    def create(self, kind: str, name: str, _path: str = "", /, **options: Any) -> Any:
        """Build the component ``name`` of ``kind`` with ``options`` (checked by :meth:`validate`).

        A factory without an options class that rejects a keyword is reported as a
        ConfigError naming ``_path``, never as a bare TypeError.
        """
        entry = self.get(kind, name)
        built, kwargs = self._check(kind, name, options, _path)
        if entry.options is not None and entry.factory is entry.options:
            return built  # the component is its own options class: already built by the check
        if entry.options is not None:
            return entry.factory(**kwargs)
        try:
            return entry.factory(**kwargs)
        except TypeError as err:  # an unknown keyword of an undeclared factory
            where = _path or f"{kind} {entry.name!r}"
            raise ConfigError([f"{where}: {err}"], source=f"{kind} {entry.name!r} options") from err

    def names(self, kind: str) -> list[str]:
        """Sorted canonical names of ``kind``."""
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Entries of one kind, or of all kinds, sorted by kind then name."""
        kinds = [kind] if kind else list(HOOKS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows dmpo's hook specs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in eps:  # an editable and a regular install can list the same entry point twice
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def _allowed(ep: importlib.metadata.EntryPoint, restrict: set[str] | None) -> bool:
    dist = getattr(ep, "dist", None)
    own = dist is not None and distribution.is_own(dist.name)
    return own or restrict is None or ep.name in restrict


def _collect(pm: pluggy.PluginManager, plugin: object, name: str) -> list[Entry]:
    """Call every hook ``plugin`` implements and return what it registered."""
    found: list[Entry] = []
    for kind, hook_name in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(
                comp_name: str, factory: Callable[..., Any], *, aliases: Iterable[str] = (), help: str = "",
                options: type | None = None, fixed: Mapping[str, Any] | None = None,
                resolve_model: Callable[[str], str] | None = None,
                recommended_config: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None, _kind=kind,
            ) -> None:
                if options is not None and not attrs.has(options):
                    raise InvalidArgumentError("options", options, f"{comp_name!r}: pass an attrs class (or None)")
                if recommended_config is not None and not (callable(recommended_config)
                                                           or isinstance(recommended_config, Mapping)):
                    raise InvalidArgumentError("recommended_config", recommended_config,
                                               f"{comp_name!r}: pass a mapping of config keys or fn(model) -> mapping")
                found.append(
                    Entry(kind=_kind, name=comp_name, factory=factory, plugin=name, help=help, aliases=tuple(aliases),
                          options=options, fixed=fixed or {}, resolve_model=resolve_model,
                          recommended_config=recommended_config)
                )

            kwargs = {"register": register} if "register" in impl.argnames else {}
            impl.function(**kwargs)
    return found


def build_registry(
    *,
    plugins: Sequence[tuple[str, object]] = (),
    entry_points: bool = True,
    restrict: set[str] | None = None,
    defaults: bool | None = None,
) -> Registry:
    """Load plugins and build a registry.

    Args:
        plugins: extra ``(name, module_or_object)`` plugins to register (tests use this).
        entry_points: also load the entry-point group ``dmpo``.
        restrict: names of third-party entry points to load (None: all, or ``$DMPO_PLUGINS``).
        defaults: load :data:`DEFAULT_PLUGINS` first (default: when ``entry_points`` is on).

    A plugin that fails to import, to register, or that registers a name another plugin
    already holds (a built-in keeps its name) is left out whole and reported in
    ``registry.report.failed`` with a one-line reason naming both plugins; the others load.
    """
    if restrict is None and os.environ.get(ENV_RESTRICT) is not None:
        restrict = {n.strip() for n in os.environ[ENV_RESTRICT].split(",") if n.strip()}
    registry = Registry()
    pm = plugin_manager()
    candidates: list[tuple[str, Callable[[], object]]] = []
    if entry_points if defaults is None else defaults:
        candidates += [(n, (lambda m=m: importlib.import_module(m))) for n, m in DEFAULT_PLUGINS]
    candidates += [(n, (lambda p=p: p)) for n, p in plugins]
    if entry_points:
        candidates += [(ep.name, ep.load) for ep in _entry_points() if _allowed(ep, restrict)]
    for name, load in candidates:
        if pm.has_plugin(name) or name in registry.report.failed:
            continue
        try:
            plugin = load()
            pm.register(plugin, name=name)
            try:
                pm.check_pending()
            except pluggy.PluginValidationError:
                pm.unregister(plugin)
                raise
            entries = _collect(pm, plugin, name)
            _check_free(registry, entries)
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is reported, not fatal
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
            registry.report.failed[name] = reason
            if pm.has_plugin(name):
                pm.unregister(name=name)
            continue
        for entry in entries:
            registry.add(entry)
        registry.report.loaded.append(name)
    return registry


def _check_free(registry: Registry, entries: Sequence[Entry]) -> None:
    """Raise DuplicateNameError when one of ``entries`` takes a name (or alias) already
    registered, or one the same plugin registers twice, before any of them is added."""
    mine: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        for name in (entry.name, *entry.aliases):
            if name in registry._aliases.get(entry.kind, {}):
                other = registry.get(entry.kind, name)
                raise DuplicateNameError(entry.kind, name, other.plugin, entry.plugin)
            if (entry.kind, name) in mine:
                raise DuplicateNameError(entry.kind, name, entry.plugin, entry.plugin)
            mine[(entry.kind, name)] = entry


_DEFAULT: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use from the installed plugins."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = build_registry()
    return _DEFAULT


def reset_registry() -> None:
    """Forget the process-wide registry (the next :func:`get_registry` reloads plugins)."""
    global _DEFAULT
    _DEFAULT = None

