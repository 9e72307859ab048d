"""Building the plugin manager of one ``Seawall`` and calling hooks safely.

Order of registration (pluggy calls the last registered first, and
``trylast`` built-ins after every other plugin):

1. the hookspecs; 2. the built-ins, by ``builtin.PRIORITY``; 3. entry points of the
``seawall`` group, filtered by ``SEAWALL_LOAD_PLUGINS``; 4. the user's plugins;
then ``check_pending()``, so a misspelt hook fails loudly.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pluggy

from seawall.plugins import PROJECT_NAME, discovery, hookspecs
from seawall.plugins.builtin import BUILTIN_MODULES, PRIORITY
from seawall.plugins.hooks import BUILTIN_PREFIX, Hooks
from seawall.plugins.inventory import ManagerReports, PluginInfo
from seawall.redact import exception_repr, redact_text

__all__ = [
    "BUILTIN_PREFIX",
    "Hooks",
    "PluginError",
    "PluginInfo",
    "SeawallPluginManager",
    "make_manager",
    "plugin_name",
]

log = logging.getLogger("seawall.plugins")


class PluginError(RuntimeError):
    """A plugin could not be loaded or does not fit the hook contract."""


class NoHooksError(PluginError):
    """A plugin implements no seawall hook (nothing is marked ``@seawall.hookimpl``)."""


#: Hooks whose implementations may be ``async def``: seawall awaits them.
ASYNC_HOOKS = frozenset({"seawall_escalate"})

#: What every hook's name starts with; built-ins name each implementation after its hook.
HOOK_PREFIX = "seawall_"

#: The package of the built-in plugin modules (and classes).
_BUILTIN_PACKAGE = "seawall.plugins.builtin."

#: Built-ins found to fit the hookspecs in this process: name -> ``_fit_key`` of it.
_FITTING: dict[str, tuple[object, ...]] = {}

#: Why an ``async def`` implementation of each other hook is refused.
_SYNC_ONLY = {
    "seawall_classify": "it is called on the request path and its answer is needed at once",
    "seawall_backoff": "it is called on the request path and its answer is needed at once",
    "seawall_event": "it is called on the request path, where nothing awaits",
    "seawall_configure": "it is called once, synchronously, while the Seawall is built",
}


def _refuse_async(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Raise ``PluginError`` when ``plugin`` has an ``async def`` impl of a synchronous hook.

    pluggy would call it and get a coroutine that nobody awaits: a classifier
    or backoff would silently answer garbage, an observer would never run.
    """
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.name in ASYNC_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            function = impl.function
            if impl.plugin is not plugin or not (
                inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
            ):
                continue
            why = _SYNC_ONLY.get(caller.name, "seawall calls it synchronously")
            msg = (
                f"plugin {name!r} implements {caller.name} with 'async def', but seawall "
                f"never awaits {caller.name}: {why}. Make it a plain 'def' (hand slow work "
                "to a queue or a task of your own); only seawall_escalate may be async"
            )
            raise PluginError(msg)


def _check_impls(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Raise ``PluginError`` saying the fix when ``plugin`` does not fit the hookspecs.

    Before pluggy registers it: pluggy's own ``PluginValidationError`` names
    the plugin by its ``repr``, and accepts both a misspelt hook (until a
    later ``check_pending()``) and an object with no hook at all.
    """
    if inspect.isclass(plugin):
        msg = (
            f"plugin {name!r} is a class; register an instance of it "
            f"({plugin.__name__}()), or seawall would call its methods without 'self'"
        )
        raise PluginError(msg)
    known = sorted(n for n in vars(pm.hook) if getattr(pm.hook, n).spec is not None)
    found = 0
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        found += 1
        hook = opts.get("specname") or attr
        caller = getattr(pm.hook, hook, None)
        spec = caller.spec if caller is not None else None
        if spec is None:
            if opts.get("optionalhook"):
                continue
            close = difflib.get_close_matches(hook, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            msg = (
                f"plugin {name!r} implements {hook}, which is not a seawall hook; {hint}"
                f"rename it to one of {', '.join(known)}, or mark it "
                "@seawall.hookimpl(optionalhook=True) if it is meant for a later seawall"
            )
            raise PluginError(msg)
        params = inspect.signature(getattr(plugin, attr)).parameters.values()
        wanted = [p.name for p in params if p.default is inspect.Parameter.empty]
        unknown = [a for a in wanted if a not in spec.argnames]
        if unknown:
            msg = (
                f"plugin {name!r}: {hook}({', '.join(wanted)}) asks for "
                f"{', '.join(map(repr, unknown))}, which seawall does not pass; it passes "
                f"{', '.join(spec.argnames)}: take any of these, by name, in any order"
            )
            raise PluginError(msg)
    if not found:
        msg = (
            f"plugin {name!r} implements no seawall hook: mark its hook functions "
            "with @seawall.hookimpl (a seawall_* function without it is ignored)"
        )
        raise NoHooksError(msg)


def _is_builtin(plugin: object) -> bool:
    """Whether ``plugin`` is a built-in module, or an instance of a built-in's class."""
    module = vars(plugin).get("__name__") if inspect.ismodule(plugin) else type(plugin).__module__
    return isinstance(module, str) and module.startswith(_BUILTIN_PACKAGE)


def _fit_key(plugin: object) -> tuple[object, ...]:
    """What a built-in's fit depends on: its module or class, and every ``seawall_*``
    attribute where Python looks it up (so a replaced hook function is checked again)."""
    if inspect.ismodule(plugin):
        kind: object = plugin
        spaces: list[Mapping[str, object]] = [vars(plugin)]
    else:
        kind = type(plugin)
        spaces = [getattr(plugin, "__dict__", {}), *map(vars, type(plugin).__mro__)]
    hooks = tuple((n, v) for space in spaces for n, v in space.items() if n.startswith(HOOK_PREFIX))
    return (kind, hooks)


class SeawallPluginManager(ManagerReports):
    """A ``PluginManager`` that tells seawall's hook cache when plugins change."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (dist, version)
        self.listeners: list[Callable[[], None]] = []
        #: Plugins left out with a warning (an entry point implementing no hook).
        self.warnings: list[str] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin``; a ``PluginError`` that says the fix (and no
        registration) for a misspelt hook, arguments the hook does not pass, no
        hook at all, or an ``async def`` impl of a synchronous hook."""
        _check_impls(self, plugin, name or self.get_canonical_name(plugin))
        result = super().register(plugin, name)
        if result is not None:
            try:
                _refuse_async(self, plugin, result)
            except PluginError:
                super().unregister(plugin)
                raise
            self._warn_wrappers(plugin, result)
        self._changed()
        return result

    def register_builtin(self, plugin: object, name: str) -> None:
        """Register built-in ``plugin``, checked as ``register`` checks any plugin, but once
        a process: again only when its hook functions are not the ones that fitted."""
        key = _fit_key(plugin)
        if _FITTING.get(name) == key:
            super().register(plugin, name)
            self._changed()
            return
        warned = len(self.warnings)
        self.register(plugin, name)
        if len(self.warnings) == warned:
            _FITTING[name] = key

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """pluggy's, but a built-in's attributes not named ``seawall_*`` are skipped
        unread: built-ins name every implementation after its hook (tests/test_plugins.py
        checks), and reading each of their ~30 attributes was most of their registration."""
        if not name.startswith(HOOK_PREFIX) and _is_builtin(plugin):
            return None
        return super().parse_hookimpl_opts(plugin, name)

    def _warn_wrappers(self, plugin: object, name: str) -> None:
        """Warn about hook wrappers: seawall's dispatcher never calls them (it calls
        each implementation itself, to isolate faults), so they would do nothing."""
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                    warning = (
                        f"plugin {name!r} implements {caller.name} as a hook wrapper, which "
                        "seawall never calls: make it a plain @seawall.hookimpl (tryfirst=True "
                        "to be asked first)"
                    )
                    log.warning("%s", warning)
                    self.warnings.append(warning)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        result = super().unregister(plugin, name)
        self._changed()
        return result

    def set_blocked(self, name: str) -> None:
        super().set_blocked(name)
        self._changed()


def _load_filter() -> set[str] | None:
    raw = os.environ.get("SEAWALL_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def load_entrypoints(pm: SeawallPluginManager) -> int:
    """Register plugins from the ``seawall`` entry-point group; return how many.

    ``SEAWALL_LOAD_PLUGINS`` filters: unset loads all, empty loads none,
    ``a,b`` loads only entry points or distributions named ``a`` or ``b``.
    Which entry points exist comes from ``discovery`` (kept while ``sys.path`` and
    its directories stay as they were); each is loaded afresh, here.
    """
    wanted = _load_filter()
    count = 0
    for found in discovery.entry_points():
        ep, dist_name, version = found.entry_point, found.dist_name, found.version
        if wanted is not None and ep.name not in wanted and dist_name not in wanted:
            continue
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:
            # SystemExit too: a module that calls sys.exit() when imported (a script
            # installed as a plugin) must not end the application that built a Seawall.
            where = f" from {dist_name} {version}" if dist_name else ""
            msg = (
                f"could not load seawall plugin {ep.name!r}{where}: {exception_repr(exc)}; "
                "upgrade or uninstall it, or leave it out of SEAWALL_LOAD_PLUGINS"
            )
            raise PluginError(msg) from exc
        if pm.is_registered(plugin):
            # Two entry points naming one module (an old name kept beside a new one):
            # registered once; pluggy would refuse the second and break every Seawall.
            log.debug(
                "seawall plugin %r is %r again; registered once", ep.name, pm.get_name(plugin)
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
        except NoHooksError as exc:
            # Someone else's package: warn and go on rather than break every Seawall.
            where = f" (from {dist_name} {version})" if dist_name else ""
            warning = f"{exc}{where}; it is not loaded"
            log.warning("%s", warning)
            pm.warnings.append(warning)
            continue
        if dist_name is not None:
            pm.distributions[ep.name] = (dist_name, version or "")
        count += 1
    return count


def register_builtins(pm: SeawallPluginManager, blocked: Iterable[str] = ()) -> None:
    """Register every built-in plugin module (each marks its impls ``trylast``).

    In ``PRIORITY`` order, lowest first: among ``trylast`` impls pluggy asks the
    one registered first first (``tests/test_plugins.py`` checks it still does).
    """
    for name in blocked:
        pm.set_blocked(name)
    for module_name in sorted(BUILTIN_MODULES, key=PRIORITY.__getitem__):
        name = BUILTIN_PREFIX + module_name
        if pm.is_blocked(name):
            continue
        module = importlib.import_module(f"seawall.plugins.builtin.{module_name}")
        factory = getattr(module, "plugin", None)
        pm.register_builtin(factory() if callable(factory) else module, name)


def plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    """A readable, unique name for a user plugin: its module, or its class's dotted path.

    pluggy would name an instance by ``id()``, which says nothing in a log line.
    """
    base = getattr(plugin, "__name__", None)
    if not isinstance(base, str):
        cls = type(plugin)
        base = f"{cls.__module__}.{cls.__qualname__}"
    name, number = base, 1
    while pm.has_plugin(name) or pm.is_blocked(name):
        number += 1
        name = f"{base}#{number}"
    return name


def make_manager(
    plugins: Sequence[object] = (),
    *,
    entrypoints: bool = True,
    blocked: Iterable[str] = (),
) -> SeawallPluginManager:
    """A new manager with specs, built-ins, entry points and ``plugins``."""
    pm = SeawallPluginManager()
    register_builtins(pm, blocked)
    if entrypoints:
        load_entrypoints(pm)
    for plugin in plugins:
        if pm.is_registered(plugin):
            continue  # given twice, or also installed as an entry point: registered once
        pm.register(plugin, name=plugin_name(pm, plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        msg = (
            f"plugin {pm.get_name(exc.plugin)!r} implements a hook seawall does not have: {exc}; "
            "fix the spelling (hooks start 'seawall_') or mark it optionalhook=True"
        )
        raise PluginError(msg) from exc
    if os.environ.get("SEAWALL_TRACE_PLUGINS") == "1":
        # Traces show hook arguments (outcomes hold response headers and exceptions).
        pm.trace.root.setwriter(lambda text: log.debug("%s", redact_text(text.rstrip())))
        pm.enable_tracing()
    return pm
