//! The WASM side: one wasmtime engine, module checks, pooled instances, calls under a deadline
//! and a memory cap, and the host functions plugins import.
//!
//! The ABI (see plugins/README.md): a plugin exports `memory`, `decentd_alloc(len) -> ptr` and
//! `decentd_handle(ptr, len) -> i64`. The host writes one JSON [`PluginInput`] into memory it
//! got from `decentd_alloc` and calls `decentd_handle`, which answers `(ptr << 32) | len` of a
//! JSON [`PluginOutput`] (0: no actions). Imports, all from module `decentd`: `log(ptr, len)`,
//! `now_ms() -> i64` (Unix time), `random() -> i64` (from the OS CSPRNG), and with the `kv`
//! capability `kv_get(kptr, klen) -> i64` (packed like the answer, -1 when
//! absent), `kv_set(kptr, klen, vptr, vlen) -> i32` and `kv_delete(kptr, klen) -> i32` (0 ok,
//! -1 refused). No WASI: no files, no network.
//!
//! [`PluginInput`]: decentd_protocol::PluginInput
//! [`PluginOutput`]: decentd_protocol::PluginOutput

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{
    AsContextMut, Caller, Config, Engine, Extern, ExternType, FuncType, Instance, Linker, Module,
    Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, ValType,
};

use super::manifest::{Capability, Manifest};
use crate::store::KvSpace;
use decentd_protocol::{PluginInput, PluginOutput};

/// Longest answer a plugin may give, and longest key and value in its key-value space.
pub const MAX_OUTPUT: usize = 1024 * 1024;
pub const MAX_KV_KEY: usize = 256;
pub const MAX_KV_VALUE: usize = 64 * 1024;
/// Keys one plugin may store.
pub const MAX_KV_KEYS: usize = 100_000;
/// Idle instances kept per plugin (one per concurrent caller is created on demand).
const POOL: usize = 8;
/// How often the epoch advances: the resolution of call deadlines.
const TICK: Duration = Duration::from_millis(1);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The deadline passed (epoch interruption); the call was stopped `overrun_us` after it.
    Deadline { overrun_us: u64 },
    /// A trap: unreachable, out-of-bounds access, a refused memory growth, a bad pointer
    /// handed to a host function, ...
    Trap(String),
    /// The module could not be instantiated (e.g. its initial memory is over the cap).
    Instantiate(String),
    /// The answer was not a valid JSON output.
    BadOutput(String),
    /// Not called: too many plugin calls are waiting for a plugin thread (the server's load,
    /// not the plugin's fault: it does not count toward disabling it).
    Busy,
}

impl CallError {
    /// The whole text of a trap, with wasmtime's wasm backtrace (for debug logs); None when
    /// there is nothing beyond the one-line summary.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            CallError::Trap(e) if e.contains('\n') => Some(e),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    /// One line: a trap's wasm backtrace is left to `backtrace`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Deadline { .. } => write!(f, "deadline exceeded"),
            CallError::Trap(e) => write!(f, "trap: {}", e.lines().next().unwrap_or_default()),
            CallError::Instantiate(e) => write!(f, "cannot instantiate: {e}"),
            CallError::BadOutput(e) => write!(f, "bad answer: {e}"),
            CallError::Busy => write!(f, "not called: the plugin threads are busy"),
        }
    }
}

/// What a store carries for host functions.
pub struct Ctx {
    limits: StoreLimits,
    kv: Option<std::sync::Arc<dyn KvSpace>>,
    plugin: Arc<str>,
    clock: Arc<EpochClock>,
    /// When the running call is due; moved later by the time its key-value calls spent
    /// waiting on storage (`storage_credit` at most), which is not the plugin's own time.
    due: Option<std::time::Instant>,
    storage_credit: Duration,
}

/// Storage time a call may spend in key-value calls beyond its deadline: PostgreSQL storage
/// answers in a round trip, not microseconds, and that wait is the server's, not the plugin's.
const STORAGE_CREDIT: Duration = Duration::from_millis(250);

/// The engine plus the linker of host functions; one per server.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Ctx>,
    clock: Arc<EpochClock>,
    ticker: OnceLock<()>,
}

/// The epoch as wall-clock time: epoch `e` is due `e` ticks after `start`. The ticker raises
/// `epoch` (and then the engine's) as time passes, so a deadline can be turned into the first
/// epoch at or after it, whatever the sleeps' drift.
struct EpochClock {
    start: std::time::Instant,
    /// Ticks counted so far. Raised before the engine's epoch, so the engine is never ahead
    /// of it: a deadline computed from it may fire a moment late, never early.
    epoch: std::sync::atomic::AtomicU64,
}

impl EpochClock {
    /// Ticks from now to the first tick at or after `deadline` from now.
    fn ticks_until(&self, deadline: Duration) -> u64 {
        let due = self.start.elapsed() + deadline;
        let target = due.as_micros().div_ceil(TICK.as_micros()) as u64;
        let now = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        target.saturating_sub(now).max(1)
    }
}

impl Runtime {
    pub fn new() -> Result<Self, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| format!("wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        link_host_functions(&mut linker).map_err(|e| format!("wasm host functions: {e}"))?;
        Ok(Self {
            engine,
            linker,
            clock: Arc::new(EpochClock {
                start: std::time::Instant::now(),
                epoch: Default::default(),
            }),
            ticker: OnceLock::new(),
        })
    }

    /// Starts the epoch ticker (once, on the first plugin loaded).
    fn start_ticker(&self) {
        self.ticker.get_or_init(|| {
            let (engine, clock) = (self.engine.clone(), self.clock.clone());
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    // The epoch follows the clock, not the count of sleeps: each wake-up is
                    // aimed at the next tick's due time (a plain 1 ms sleep lasts ~1.06 ms and
                    // would let a 1 s deadline run for 1.06 s), with the kernel's timer slack
                    // (50 µs by default) cut to 1 µs. Missed ticks are made up at once.
                    let _ =
                        rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
                    loop {
                        let next = clock.epoch.load(std::sync::atomic::Ordering::Relaxed) + 1;
                        let at = clock.start + TICK * next as u32;
                        std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                        let due = (clock.start.elapsed().as_micros() / TICK.as_micros()) as u64;
                        while clock.epoch.load(std::sync::atomic::Ordering::Relaxed) < due {
                            clock
                                .epoch
                                .fetch_add(1, std::sync::atomic::Ordering::Release);
                            engine.increment_epoch();
                        }
                    }
                })
                .map(|_| ())
                .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the plugin clock"));
        });
    }

    /// Compiles a module (`.wasm` or `.wat`) and checks its exports and imports against the
    /// ABI and the manifest's capabilities.
    pub fn compile(&self, manifest: &Manifest, path: &Path) -> Result<Module, String> {
        let module = Module::from_file(&self.engine, path)
            .map_err(|e| format!("{}: not a valid module: {e:#}", path.display()))?;
        check_module(manifest, &module).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(module)
    }

    /// A pool of instances of one plugin.
    pub fn instances(
        self: &Arc<Self>,
        manifest: &Manifest,
        module: Module,
        kv: Option<std::sync::Arc<dyn KvSpace>>,
    ) -> Instances {
        self.start_ticker();
        let config = toml_to_json(&manifest.config);
        Instances {
            runtime: self.clone(),
            module,
            kv,
            plugin: Arc::from(manifest.name.as_str()),
            memory_bytes: manifest.limits.memory_bytes(),
            init_deadline: manifest.limits.event_deadline(),
            init: serde_json::to_vec(&PluginInput::Init { config }).unwrap_or_default(),
            idle: Mutex::new(Vec::new()),
        }
    }
}

fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}

/// One live instance.
struct Live {
    store: Store<Ctx>,
    memory: wasmtime::Memory,
    alloc: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32), i64>,
}

/// Instances of one plugin, created on demand and reused; an instance that failed a call is
/// dropped (its state may be broken), so a plugin's in-memory state must not be relied on:
/// use the key-value space.
pub struct Instances {
    runtime: Arc<Runtime>,
    module: Module,
    kv: Option<std::sync::Arc<dyn KvSpace>>,
    plugin: Arc<str>,
    memory_bytes: usize,
    init_deadline: Duration,
    init: Vec<u8>,
    idle: Mutex<Vec<Live>>,
}

fn classify(error: wasmtime::Error) -> CallError {
    match error.downcast_ref::<Trap>() {
        // The caller knows when the deadline was (`past_deadline`).
        Some(Trap::Interrupt) => CallError::Deadline { overrun_us: 0 },
        // The root cause ("wasm trap: ... unreachable ...") first, for the one-line log and
        // the disabled reason; the whole error with its wasm backtrace after it.
        _ => CallError::Trap(format!("{}\n{error:#}", error.root_cause())),
    }
}

impl Instances {
    fn instantiate(&self) -> Result<Live, CallError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .memories(1)
            .tables(4)
            .table_elements(100_000)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.runtime.engine,
            Ctx {
                limits,
                kv: self.kv.clone(),
                plugin: self.plugin.clone(),
                clock: self.runtime.clock.clone(),
                due: None,
                storage_credit: Duration::ZERO,
            },
        );
        store.limiter(|ctx| &mut ctx.limits);
        store.set_epoch_deadline(self.runtime.clock.ticks_until(self.init_deadline));
        let instance: Instance = self
            .runtime
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| match classify(e) {
                CallError::Trap(e) => CallError::Instantiate(e),
                other => other,
            })?;
        let missing = |what: &str| CallError::Instantiate(format!("missing export {what}"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("memory"))?;
        let alloc = instance
            .get_typed_func(&mut store, "decentd_alloc")
            .map_err(|_| missing("decentd_alloc"))?;
        let handle = instance
            .get_typed_func(&mut store, "decentd_handle")
            .map_err(|_| missing("decentd_handle"))?;
        let mut live = Live {
            store,
            memory,
            alloc,
            handle,
        };
        let init = self.init.clone();
        invoke(&self.runtime.clock, &mut live, &init, self.init_deadline)?;
        Ok(live)
    }

    /// Calls the plugin with one input under `deadline`.
    pub fn call(&self, input: &[u8], deadline: Duration) -> Result<PluginOutput, CallError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut live = match pooled {
            Some(live) => live,
            None => self.instantiate()?,
        };
        let output = invoke(&self.runtime.clock, &mut live, input, deadline)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL {
            idle.push(live);
        }
        Ok(output)
    }
}

/// Hands `input` to `decentd_handle` and parses the answer.
fn invoke(
    clock: &EpochClock,
    live: &mut Live,
    input: &[u8],
    deadline: Duration,
) -> Result<PluginOutput, CallError> {
    let started = std::time::Instant::now();
    let ctx = live.store.data_mut();
    ctx.due = Some(started + deadline);
    ctx.storage_credit = STORAGE_CREDIT;
    live.store.set_epoch_deadline(clock.ticks_until(deadline));
    let result = call_guest(live, input);
    let ctx = live.store.data_mut();
    // The deadline as it ended up, storage waits included.
    let allowed = ctx.due.take().map_or(deadline, |due| due - started);
    result.map_err(|e| past_deadline(e, started, allowed))
}

/// A deadline error with how long after the deadline the call was stopped.
fn past_deadline(error: CallError, started: std::time::Instant, deadline: Duration) -> CallError {
    match error {
        CallError::Deadline { .. } => CallError::Deadline {
            overrun_us: started.elapsed().saturating_sub(deadline).as_micros() as u64,
        },
        other => other,
    }
}

fn call_guest(live: &mut Live, input: &[u8]) -> Result<PluginOutput, CallError> {
    let len = i32::try_from(input.len()).map_err(|_| CallError::Trap("input too large".into()))?;
    let ptr = live.alloc.call(&mut live.store, len).map_err(classify)?;
    live.memory
        .write(&mut live.store, ptr as u32 as usize, input)
        .map_err(|_| CallError::Trap("decentd_alloc returned memory out of bounds".into()))?;
    let packed = live
        .handle
        .call(&mut live.store, (ptr, len))
        .map_err(classify)?;
    if packed == 0 {
        return Ok(PluginOutput::default());
    }
    let (out_ptr, out_len) = (
        (packed as u64 >> 32) as usize,
        (packed as u64 as u32) as usize,
    );
    if out_len > MAX_OUTPUT {
        return Err(CallError::BadOutput(format!(
            "answer of {out_len} bytes (at most {MAX_OUTPUT})"
        )));
    }
    let bytes = live
        .memory
        .data(&live.store)
        .get(out_ptr..out_ptr + out_len)
        .ok_or_else(|| CallError::BadOutput("answer out of bounds".into()))?;
    serde_json::from_slice(bytes).map_err(|e| CallError::BadOutput(e.to_string()))
}

/// The bytes at `ptr..ptr+len` of the caller's memory, or a trap (bad pointer).
fn guest_bytes(caller: &mut Caller<'_, Ctx>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("plugin exports no memory"));
    };
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(&caller)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "host call with a bad pointer: {len} bytes at {start} are outside memory"
            ))
        })
}

/// Copies `bytes` into memory from the guest's `decentd_alloc`; returns `(ptr << 32) | len`.
fn give_guest(caller: &mut Caller<'_, Ctx>, bytes: &[u8]) -> wasmtime::Result<i64> {
    let alloc = caller
        .get_export("decentd_alloc")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::Error::msg("plugin exports no decentd_alloc"))?
        .typed::<i32, i32>(&caller)?;
    let ptr = alloc.call(&mut *caller, bytes.len() as i32)?;
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("plugin exports no memory"));
    };
    memory.write(&mut *caller, ptr as u32 as usize, bytes)?;
    Ok(((ptr as u32 as i64) << 32) | bytes.len() as i64)
}

/// Runs a key-value operation and moves the call's deadline by the time it waited on storage
/// (within the call's storage credit).
fn with_kv<R>(
    caller: &mut Caller<'_, Ctx>,
    work: impl FnOnce(&dyn KvSpace) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let kv = caller
        .data()
        .kv
        .clone()
        .ok_or_else(|| wasmtime::Error::msg("the kv capability is not granted"))?;
    let started = std::time::Instant::now();
    let result = work(&*kv);
    let ctx = caller.data_mut();
    let waited = started.elapsed().min(ctx.storage_credit);
    ctx.storage_credit -= waited;
    if let Some(due) = ctx.due.as_mut() {
        *due += waited;
        let left = due.saturating_duration_since(std::time::Instant::now());
        let ticks = ctx.clock.ticks_until(left);
        caller.as_context_mut().set_epoch_deadline(ticks);
    }
    result
}

fn link_host_functions(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "decentd",
        "log",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = guest_bytes(&mut caller, ptr, len.min(4096))?;
            let plugin = caller.data().plugin.clone();
            tracing::info!(plugin = %plugin, "{}", String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;
    linker.func_wrap("decentd", "now_ms", || -> i64 {
        crate::ids::now_ms() as i64
    })?;
    linker.func_wrap("decentd", "random", || -> i64 {
        i64::from_le_bytes(crate::auth::random_bytes::<8>())
    })?;
    linker.func_wrap(
        "decentd",
        "kv_get",
        |mut caller: Caller<'_, Ctx>, kptr: i32, klen: i32| -> wasmtime::Result<i64> {
            let key = guest_bytes(&mut caller, kptr, klen)?;
            let value = with_kv(&mut caller, |kv| kv.get(&key).map_err(wasmtime::Error::msg))?;
            match value {
                Some(value) => give_guest(&mut caller, &value),
                None => Ok(-1),
            }
        },
    )?;
    linker.func_wrap(
        "decentd",
        "kv_set",
        |mut caller: Caller<'_, Ctx>,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vlen: i32|
         -> wasmtime::Result<i32> {
            let key = guest_bytes(&mut caller, kptr, klen)?;
            let value = guest_bytes(&mut caller, vptr, vlen)?;
            if key.len() > MAX_KV_KEY || value.len() > MAX_KV_VALUE {
                return Ok(-1);
            }
            with_kv(&mut caller, |kv| {
                if kv.get(&key).map_err(wasmtime::Error::msg)?.is_none() && kv.len() >= MAX_KV_KEYS
                {
                    return Ok(-1);
                }
                kv.set(&key, &value).map_err(wasmtime::Error::msg)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        "decentd",
        "kv_delete",
        |mut caller: Caller<'_, Ctx>, kptr: i32, klen: i32| -> wasmtime::Result<i32> {
            let key = guest_bytes(&mut caller, kptr, klen)?;
            with_kv(&mut caller, |kv| {
                kv.delete(&key).map_err(wasmtime::Error::msg)
            })?;
            Ok(0)
        },
    )?;
    Ok(())
}

fn signature(ty: &FuncType) -> String {
    let name = |t: ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        _ => "ref",
    };
    let params: Vec<&str> = ty.params().map(name).collect();
    let results: Vec<&str> = ty.results().map(name).collect();
    format!("({}) -> ({})", params.join(", "), results.join(", "))
}

/// The imports a plugin may use, their signatures, and the capability each needs.
const IMPORTS: &[(&str, &str, Option<Capability>)] = &[
    ("log", "(i32, i32) -> ()", None),
    ("now_ms", "() -> (i64)", None),
    ("random", "() -> (i64)", None),
    ("kv_get", "(i32, i32) -> (i64)", Some(Capability::Kv)),
    (
        "kv_set",
        "(i32, i32, i32, i32) -> (i32)",
        Some(Capability::Kv),
    ),
    ("kv_delete", "(i32, i32) -> (i32)", Some(Capability::Kv)),
];

/// Checks a module's exports and imports against the ABI and the manifest.
pub fn check_module(manifest: &Manifest, module: &Module) -> Result<(), String> {
    let mut has_memory = false;
    let has = |name: &str, want: &str| -> Result<(), String> {
        match module.get_export(name) {
            Some(ExternType::Func(f)) if signature(&f) == want => Ok(()),
            Some(ExternType::Func(f)) => Err(format!(
                "export {name} has signature {}, expected {want}",
                signature(&f)
            )),
            Some(_) => Err(format!("export {name} must be a function {want}")),
            None => Err(format!("missing export {name}: {want}")),
        }
    };
    has("decentd_alloc", "(i32) -> (i32)")?;
    has("decentd_handle", "(i32, i32) -> (i64)")?;
    if let Some(ExternType::Memory(_)) = module.get_export("memory") {
        has_memory = true;
    }
    if !has_memory {
        return Err("missing export memory (the module's linear memory)".into());
    }
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let known = IMPORTS.iter().find(|(n, _, _)| *n == name);
        let Some((_, want, needs)) = known.filter(|_| module_name == "decentd") else {
            return Err(format!(
                "imports {module_name}.{name}, which the host does not provide (no WASI: plugins \
                 get only decentd.log, now_ms, random, kv_get, kv_set and kv_delete)"
            ));
        };
        let ExternType::Func(f) = import.ty() else {
            return Err(format!("import decentd.{name} must be a function"));
        };
        if signature(&f) != *want {
            return Err(format!(
                "import decentd.{name} has signature {}, expected {want}",
                signature(&f)
            ));
        }
        if let Some(capability) = needs {
            if !manifest.has(*capability) {
                return Err(format!(
                    "imports decentd.{name}, which needs the {:?} capability",
                    capability.key()
                ));
            }
        }
    }
    Ok(())
}
