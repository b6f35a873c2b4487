"""The models a server has loaded, and loading on demand (LM Studio's JIT loading, Ollama's keep_alive).

    pool = ModelPool(engine, catalog=list_models, make_engine=lambda spec: Engine(resolve_model(spec)),
                     max_models=1, idle_ttl_s=3600)
    lease = await pool.acquire("Qwen/Qwen2.5-0.5B-Instruct")   # loads it, unloading the least recently used
    try: ... lease.engine.submit(...) ...
    finally: lease.release()

The server starts with one engine (its `--model`); a request naming another model of the catalog (`autoqwen models
list`) loads it, first unloading the least recently used idle model when `max_models` are resident. Every request
for a model that is loading waits for that one load (never two copies), up to `load_wait_s`, then gets 503 with
Retry-After. A model loaded on demand is unloaded after `idle_ttl_s` without requests; the one the server started
with stays unless another needs its place. An unloaded engine drops its weights and prefix cache (`Engine.close`),
so loading it again does not grow memory.

All state lives on the server's event loop: no locks, and every change between two awaits is atomic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from autoqwen.local_llm.api_errors import APIError, unknown_model
from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.errors import EngineNotReady, LocalLLMError
from autoqwen.local_llm.resolve import ModelSource

if TYPE_CHECKING:
    from autoqwen.local_llm.model_catalog import LocalModel

__all__ = ["Lease", "ModelPool", "Resident", "Spec"]

log = logging.getLogger(__name__)

Spec: TypeAlias = str | ModelSource  # what make_engine loads: a catalog id, or the server's own model's source

# How long a listing of the catalog (a walk of the model caches) is reused before looking again; a name not in
# it looks again, at most this often (a model just pulled is found; a client's typos do not walk the caches).
CATALOG_TTL_S = 5.0
REFRESH_S = 1.0
_POLL_S = 0.05


@dataclass(eq=False)
class Resident:
    """One model in the pool: its engine, the names requests may use for it, and how it is used."""

    engine: Engine
    names: tuple[str, ...]
    key: Path
    pinned: bool  # the server's own model: never unloaded for idleness
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0
    making_room: bool = False  # waiting for another model to unload before this one starts loading

    @property
    def state(self) -> str:
        return "waiting" if self.making_room else self.engine.state

    def idle_seconds(self, now: float) -> float:
        return 0.0 if self.leases else max(0.0, now - self.last_used)


@dataclass(eq=False)
class Lease:
    """A request's hold on a loaded model: the model is not unloaded until every lease is released."""

    resident: Resident
    released: bool = False

    @property
    def engine(self) -> Engine:
        return self.resident.engine

    def release(self) -> None:
        """Give the model back (idempotent)."""
        if not self.released:
            self.released = True
            self.resident.leases -= 1
            self.resident.last_used = time.monotonic()


class ModelPool:
    """The engines a server holds, by model name, loaded on demand; see the module docstring.

    Without `catalog` and `make_engine` the pool holds `first` only, and other names get 404 (the embedded servers
    of `chat` and the workflow runner). `make_engine` gets a catalog id, or `first.source` to load the server's own
    model again (under its own names and `aliases`) after it was unloaded.
    """

    def __init__(
        self,
        first: Engine,
        *,
        aliases: Sequence[str] = (),
        catalog: Callable[[], Sequence[LocalModel]] | None = None,
        make_engine: Callable[[Spec], Engine] | None = None,
        max_models: int = 1,
        idle_ttl_s: float | None = 3600.0,
        load_wait_s: float = 60.0,
    ) -> None:
        self._own_names = tuple(dict.fromkeys((first.model_id, *aliases)))
        self._own = (first.source, _key(first.source))
        self._residents = [Resident(first, self._own_names, self._own[1], pinned=True)]
        self._catalog = catalog
        self._make_engine = make_engine
        self.max_models = max(1, max_models)
        self.idle_ttl_s = idle_ttl_s
        self.load_wait_s = load_wait_s
        self._listing: tuple[float, list[LocalModel]] = (-CATALOG_TTL_S, [])
        self._reaper: asyncio.Task[None] | None = None
        self._making: dict[Path, asyncio.Event] = {}  # engines being made, by key: one per model, never two

    # -- what is there -------------------------------------------------------------------------
    @property
    def residents(self) -> list[Resident]:
        """The models loaded or loading, most recently used last."""
        return sorted(self._residents, key=lambda r: r.last_used)

    @property
    def current(self) -> Resident | None:
        """What /health reports: the most recently used ready model, else the most recently used one (loading or
        failed), else None (every model was unloaded: the next request loads one)."""
        candidates = [r for r in self.residents if r.state == "ready"] or self.residents
        return candidates[-1] if candidates else None

    @property
    def engines(self) -> list[Engine]:
        return [r.engine for r in self._residents]

    def listing(self, *, cached: bool = False) -> list[tuple[str, Resident | None]]:
        """Every model name the server answers to, with the resident model it names (None: not loaded): the loaded
        models' names, the server's own model's, then the catalog's. May walk the model caches (unless `cached`:
        the last listing): call it off the event loop."""
        found: dict[str, Resident | None] = {name: r for r in self._residents for name in r.names}
        for name in self._own_names:
            found.setdefault(name, None)
        for model in self._local_models(cached=cached):
            found.setdefault(model.id, self._by_key(model.path.resolve()))
        return list(found.items())

    def resident_for(self, name: str) -> Resident | None:
        """The loaded (or loading) model `name` names, if any."""
        return next((r for r in self._residents if name in r.names), None)

    def ps(self) -> list[dict[str, Any]]:
        """What `autoqwen ps` shows of each model, most recently used first (Ollama's /api/ps field names)."""
        now = time.monotonic()
        rows = []
        for r in reversed(self.residents):
            idle = r.idle_seconds(now)
            expires = None
            if not r.pinned and self.idle_ttl_s is not None and not r.leases:
                expires = time.time() + max(0.0, self.idle_ttl_s - idle)
            cache_bytes = r.engine.prefix_cache.nbytes
            rows.append(
                {
                    "name": r.names[0],
                    "model": r.names[0],
                    "names": list(r.names),
                    "state": r.state,
                    "load_stage": r.engine.load_stage,
                    "loaded_at": _iso(r.loaded_at),
                    "size": r.engine.weight_bytes + cache_bytes if r.engine.weight_bytes else None,
                    "prefix_cache_bytes": cache_bytes,
                    "context_length": r.engine.context_length or None,
                    "requests": r.leases,
                    "idle_seconds": round(idle, 1),
                    "expires_at": _iso(expires) if expires is not None else None,
                    "pinned": r.pinned,
                }
            )
        return rows

    # -- leases --------------------------------------------------------------------------------
    async def acquire(self, name: str) -> Lease:
        """Hold the model `name` for one request, loading it if it is not resident; raises APIError 404 for an
        unknown name, EngineNotReady (503) when it does not load within `load_wait_s`."""
        deadline = time.monotonic() + self.load_wait_s
        resident = self.resident_for(name)
        if resident is not None:
            resident.leases += 1  # held from here: a model a request waits for is never unloaded
        else:
            resident = await self._load(name, deadline)  # held already
        lease = Lease(resident)
        try:
            while resident.making_room or resident.engine.state == "loading":
                if resident not in self._residents:
                    raise EngineNotReady(f"loading {name} was given up; retry shortly")
                if time.monotonic() >= deadline:
                    raise self._still_loading(name)
                await asyncio.sleep(_POLL_S)
            if resident.engine.state == "failed" and not resident.pinned and resident in self._residents:
                await self.unload(resident)  # the next request tries again; this one gets the load error
        except BaseException:
            lease.release()
            raise
        resident.last_used = time.monotonic()
        return lease

    async def _load(self, name: str, deadline: float) -> Resident:
        """Register and start loading the model `name` (held once for the caller), or join its load."""
        found = await asyncio.to_thread(self._spec_for, name) if self._make_engine is not None else None
        if found is None or self._make_engine is None:
            raise unknown_model(name, tuple(n for n, _ in self.listing(cached=True)))
        spec, key = found
        while (making := self._making.get(key)) is not None:  # another request is making this engine: join it
            try:
                await asyncio.wait_for(making.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise self._still_loading(name) from None
        held = self.resident_for(name) or self._by_key(key)  # loaded meanwhile, maybe under another name
        if held is not None:
            if name not in held.names:
                held.names = (*held.names, name)
            held.leases += 1
            return held
        made = self._making[key] = asyncio.Event()
        try:
            engine = await asyncio.to_thread(self._make_engine, spec)
        except LocalLLMError as exc:
            raise EngineNotReady(f"could not load {name}: {exc}") from exc
        finally:  # those waiting resume after the resident below is registered (no await before it)
            del self._making[key]
            made.set()
        own = key == self._own[1]
        names = tuple(dict.fromkeys((*self._own_names, name))) if own else (name,)
        resident = Resident(engine, names, key, pinned=own, leases=1, making_room=True)
        self._residents.append(resident)
        try:
            await self._make_room(resident, deadline)
        except BaseException:
            resident.leases -= 1
            if resident in self._residents:
                self._residents.remove(resident)
            raise
        finally:
            resident.making_room = False
        log.info("loading %s on demand", name)
        engine.start()
        self._start_reaper()
        return resident

    async def _make_room(self, newcomer: Resident, deadline: float) -> None:
        """Unload the least recently used idle models until `newcomer` fits in `max_models`, counting the models
        waiting for room before it (first come, first loaded) but not those after it."""
        while len(self._holding_room_for(newcomer)) > self.max_models:
            idle = [r for r in self.residents if r is not newcomer and not r.leases and r.state in ("ready", "failed")]
            if idle:
                await self.unload(idle[0])
                continue
            if time.monotonic() >= deadline:
                busy = ", ".join(r.names[0] for r in self._residents if r is not newcomer)
                raise APIError(
                    503,
                    f"cannot load {newcomer.names[0]}: {busy} still serving requests and --max-models is "
                    f"{self.max_models}; retry shortly",
                    type="server_busy",
                    code="model_busy",
                    headers={"Retry-After": "5"},
                )
            await asyncio.sleep(_POLL_S)

    async def unload(self, resident: Resident) -> None:
        """Unload `resident` (its engine closed, its memory given back)."""
        if resident in self._residents:
            self._residents.remove(resident)
        log.info("unloading %s", resident.names[0])
        await asyncio.to_thread(resident.engine.close)

    async def close(self) -> None:
        """Unload every model and stop the idle check."""
        if self._reaper is not None:
            self._reaper.cancel()
        for resident in list(self._residents):
            await self.unload(resident)

    # -- idle unloading ------------------------------------------------------------------------
    def _start_reaper(self) -> None:
        if self.idle_ttl_s is not None and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.get_running_loop().create_task(self._reap(self.idle_ttl_s))

    async def _reap(self, ttl: float) -> None:
        while any(not r.pinned for r in self._residents):
            await asyncio.sleep(min(max(ttl / 4, _POLL_S), 30.0))
            now = time.monotonic()
            for r in list(self._residents):
                if not r.pinned and not r.leases and r.state in ("ready", "failed") and r.idle_seconds(now) >= ttl:
                    await self.unload(r)

    # -- helpers -------------------------------------------------------------------------------
    def _spec_for(self, name: str) -> tuple[Spec, Path] | None:
        """What loads the model `name`, and where its weights are; looks at the catalog again when the name is not
        in its last listing (at most every REFRESH_S). Runs off the event loop."""
        if name in self._own_names:
            return self._own
        local = next((m for m in self._local_models() if m.id == name), None)
        if local is None and time.monotonic() - self._listing[0] > REFRESH_S:
            local = next((m for m in self._local_models(refresh=True) if m.id == name), None)
        return (local.id, local.path.resolve()) if local is not None else None

    def _local_models(self, *, refresh: bool = False, cached: bool = False) -> list[LocalModel]:
        if self._catalog is None:
            return []
        when, models = self._listing
        if refresh or (not cached and time.monotonic() - when > CATALOG_TTL_S):
            models = list(self._catalog())
            self._listing = (time.monotonic(), models)
        return models

    def _holding_room_for(self, newcomer: Resident) -> list[Resident]:
        place = self._residents.index(newcomer)
        return [r for i, r in enumerate(self._residents) if not r.making_room or i <= place]

    def _still_loading(self, name: str) -> EngineNotReady:
        return EngineNotReady(f"model {name} is still loading after {self.load_wait_s:g} s; retry shortly")

    def _by_key(self, key: Path) -> Resident | None:
        return next((r for r in self._residents if r.key == key), None)


def _key(source: ModelSource) -> Path:
    """Where a model's weights are: its .gguf file or its folder (as the catalog's `path` says)."""
    return (source.path / source.gguf_file if source.gguf_file else source.path).resolve()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
