//! Write a decentd plugin in a few lines: implement [`Plugin`] for a type (every method has a
//! default) and name it in [`export_plugin!`]. The host calls your plugin with typed inputs
//! and carries out the [`Action`]s you return, within the capabilities of your manifest.
//!
//! ```ignore
//! use decentd_plugin::{export_plugin, say, CommandEvent, Action, Plugin};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn command(&mut self, command: &CommandEvent) -> Vec<Action> {
//!         vec![say(format!("Hello, {}!", command.user.name))]
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! Instances are pooled and replaced after a failure, so keep state that must last in the
//! key-value space ([`kv`]), not in your struct.

pub use decentd_protocol::{
    Action, ChatUser, CommandEvent, Mode, PendingMessage, PluginInput, PluginOutput,
};
pub use serde_json::{self, json, Value};

/// A plugin. Each method answers the actions to carry out (none by default).
pub trait Plugin: Default + 'static {
    /// Called once per instance with the manifest's `[config]` table.
    fn init(&mut self, _config: &Value) {}
    /// Hook `message/before-store`: return [`reject`] or [`rewrite`] (or nothing to accept),
    /// plus any other actions.
    fn before_store(&mut self, _message: &PendingMessage) -> Vec<Action> {
        Vec::new()
    }
    /// A subscribed event (`message/new`, `user/new`, ...) with its Decent payload.
    fn event(&mut self, _event: &str, _data: &Value) -> Vec<Action> {
        Vec::new()
    }
    /// A command this plugin owns (`\name args` or `^name args`).
    fn command(&mut self, _command: &CommandEvent) -> Vec<Action> {
        Vec::new()
    }
}

/// A message in the current channel (or use [`Action::Say`] with `channel`).
pub fn say(text: impl Into<String>) -> Action {
    Action::Say {
        text: text.into(),
        channel: None,
        name: None,
        mode: Mode::Markdown,
    }
}

/// A message in the given channel ID.
pub fn say_in(channel: impl Into<String>, text: impl Into<String>) -> Action {
    Action::Say {
        text: text.into(),
        channel: Some(channel.into()),
        name: None,
        mode: Mode::Markdown,
    }
}

/// A private message to a user (ID or username).
pub fn tell(user: impl Into<String>, text: impl Into<String>) -> Action {
    Action::Tell {
        user: user.into(),
        text: text.into(),
        name: None,
        mode: Mode::Markdown,
    }
}

/// Refuse the message being stored.
pub fn reject(reason: impl Into<String>) -> Action {
    Action::Reject {
        reason: reason.into(),
    }
}

/// Store this text instead of the message's.
pub fn rewrite(text: impl Into<String>) -> Action {
    Action::Rewrite { text: text.into() }
}

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "decentd")]
    extern "C" {
        pub fn log(ptr: i32, len: i32);
        pub fn now_ms() -> i64;
        pub fn random() -> i64;
        pub fn kv_get(kptr: i32, klen: i32) -> i64;
        pub fn kv_set(kptr: i32, klen: i32, vptr: i32, vlen: i32) -> i32;
        pub fn kv_delete(kptr: i32, klen: i32) -> i32;
    }
}

/// Writes a line to the server's log, tagged with the plugin's name.
pub fn log(message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr`, which `message` owns for the call.
    unsafe {
        host::log(message.as_ptr() as i32, message.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}

/// Milliseconds since the Unix epoch, from the host.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a plain host call without pointers.
    unsafe {
        host::now_ms() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 64 random bits from the host's CSPRNG.
pub fn random() -> u64 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a plain host call without pointers.
    unsafe {
        host::random() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms());
        h.finish()
    }
}

/// The plugin's private key-value space (needs the `kv` capability). Keys up to 256 bytes,
/// values up to 64 KiB.
pub mod kv {
    /// The value stored under `key`.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        {
            // SAFETY: the host reads the key; the value it returns was allocated through
            // `decentd_alloc` (our allocator) with exactly its length.
            let packed = unsafe { super::host::kv_get(key.as_ptr() as i32, key.len() as i32) };
            if packed < 0 {
                return None;
            }
            let (ptr, len) = (
                (packed as u64 >> 32) as usize,
                packed as u64 as u32 as usize,
            );
            Some(unsafe { super::abi::take(ptr as *mut u8, len) })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = key;
            None
        }
    }

    /// Stores `value` under `key`; false when refused (sizes, quota).
    pub fn set(key: &str, value: &[u8]) -> bool {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: the host only reads both buffers during the call.
        unsafe {
            super::host::kv_set(
                key.as_ptr() as i32,
                key.len() as i32,
                value.as_ptr() as i32,
                value.len() as i32,
            ) == 0
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (key, value);
            false
        }
    }

    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: the host only reads the key during the call.
        unsafe {
            super::host::kv_delete(key.as_ptr() as i32, key.len() as i32);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = key;
    }
}

/// The exports behind [`export_plugin!`].
#[doc(hidden)]
pub mod abi {
    use super::{Plugin, PluginInput, PluginOutput};
    use std::alloc::{alloc, dealloc, Layout};
    use std::cell::RefCell;

    fn layout(len: usize) -> Layout {
        Layout::array::<u8>(len.max(1)).expect("allocation size")
    }

    /// `decentd_alloc`: memory for the host to write into.
    pub fn alloc_for_host(len: i32) -> i32 {
        // SAFETY: the layout is never zero-sized.
        unsafe { alloc(layout(len as usize)) as i32 }
    }

    /// Copies and frees a buffer made by `alloc_for_host`.
    ///
    /// # Safety
    /// `ptr` must come from `alloc_for_host(len)` and not be used afterwards.
    pub unsafe fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
        let bytes = std::slice::from_raw_parts(ptr, len).to_vec();
        dealloc(ptr, layout(len));
        bytes
    }

    thread_local! {
        /// The last answer, alive until the host has read it (the next call).
        static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// `decentd_handle`: one call.
    pub fn handle<P: Plugin>(cell: &RefCell<Option<P>>, ptr: i32, len: i32) -> i64 {
        // SAFETY: the host wrote `len` bytes into memory from `decentd_alloc(len)`.
        let input = unsafe { take(ptr as *mut u8, len as usize) };
        let input: PluginInput = match super::serde_json::from_slice(&input) {
            Ok(input) => input,
            Err(e) => {
                super::log(&format!("cannot read the host's input: {e}"));
                return 0;
            }
        };
        let mut slot = cell.borrow_mut();
        let plugin = slot.get_or_insert_with(P::default);
        let actions = match input {
            PluginInput::Init { config } => {
                plugin.init(&config);
                Vec::new()
            }
            PluginInput::BeforeStore { message } => plugin.before_store(&message),
            PluginInput::Event { event, data } => plugin.event(&event, &data),
            PluginInput::Command(command) => plugin.command(&command),
        };
        if actions.is_empty() {
            return 0;
        }
        let bytes = super::serde_json::to_vec(&PluginOutput { actions }).unwrap_or_default();
        ANSWER.with(|answer| {
            let mut answer = answer.borrow_mut();
            *answer = bytes;
            ((answer.as_ptr() as u32 as i64) << 32) | answer.len() as i64
        })
    }
}

/// Exports `decentd_alloc` and `decentd_handle` for a [`Plugin`] type.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        ::std::thread_local! {
            static DECENTD_PLUGIN: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        #[no_mangle]
        pub extern "C" fn decentd_alloc(len: i32) -> i32 {
            $crate::abi::alloc_for_host(len)
        }

        #[no_mangle]
        pub extern "C" fn decentd_handle(ptr: i32, len: i32) -> i64 {
            DECENTD_PLUGIN.with(|cell| $crate::abi::handle::<$plugin>(cell, ptr, len))
        }
    };
}
