//! Permission resolution: `cargo bench --bench permissions`.
//!
//! A server with 1,000 roles and 10,000 channels (each channel overriding a handful of roles and
//! `_everyone`), and users holding 1, 10 and 100 roles. Measures one permission (`has`) and the
//! full set (`resolve`), server-wide and in a channel; and the time to rebuild the index from
//! storage for 100,000 users.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use decentd::chat::load_permission_index;
use decentd::perms::{
    Change, ChannelOverrides, Permission, PermissionIndex, PermissionSet, Requester,
};
use decentd::store::{RoleRecord, Store, UserIndex, UserRecord};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const ROLES: u64 = 1_000;
const CHANNELS: u64 = 10_000;

/// A small deterministic generator, so every run measures the same server.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn set(&mut self) -> PermissionSet {
        let allow = (self.next() as u32) & decentd::perms::ALL_BITS & 0b1010_0101_0011;
        let deny = (self.next() as u32) & decentd::perms::ALL_BITS & !allow & 0b0101_0010_0100;
        PermissionSet { allow, deny }
    }
}

fn server() -> PermissionIndex {
    let mut rng = Lcg(42);
    let roles: Vec<(u64, PermissionSet)> = (1..=ROLES).map(|id| (id, rng.set())).collect();
    let order: Vec<u64> = (1..=ROLES).collect();
    let users = [
        (1u64, vec![500]),
        (10, (0..10).map(|i| 1 + i * 97 % ROLES).collect()),
        (100, (0..100).map(|i| 1 + i * 9 % ROLES).collect()),
    ];
    let mut index = PermissionIndex::new(roles, order, users);
    let overridable = Permission::CHANNEL_OVERRIDABLE
        .iter()
        .fold(0, |m, p| m | p.bit());
    for channel in 1..=CHANNELS {
        let mut o = ChannelOverrides {
            everyone: PermissionSet {
                allow: 0,
                deny: Permission::ReadMessages.bit() & overridable,
            },
            user: PermissionSet {
                allow: Permission::ReadMessages.bit(),
                deny: 0,
            },
            ..Default::default()
        };
        for _ in 0..8 {
            let s = rng.set();
            o.roles.insert(
                1 + rng.next() % ROLES,
                PermissionSet {
                    allow: s.allow & overridable,
                    deny: s.deny & overridable,
                },
            );
        }
        // Make sure the benchmarked users hit overrides in the benchmarked channel.
        if channel == 77 {
            for role in [500, 1 + 97, 1 + 9 * 3] {
                o.roles.insert(
                    role,
                    PermissionSet {
                        allow: 0,
                        deny: Permission::SendMessages.bit(),
                    },
                );
            }
        }
        index.apply(Change::SetChannelOverrides {
            channel,
            overrides: o,
        });
    }
    index
}

fn resolution(c: &mut Criterion) {
    let index = server();
    let mut group = c.benchmark_group("resolve");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for roles in [1u64, 10, 100] {
        let who = Requester::User(roles);
        group.bench_function(format!("full_set/{roles}_roles/server_wide"), |b| {
            b.iter(|| index.resolve(black_box(who), black_box(None)))
        });
        group.bench_function(format!("full_set/{roles}_roles/channel_overrides"), |b| {
            b.iter(|| index.resolve(black_box(who), black_box(Some(77))))
        });
        group.bench_function(format!("one/{roles}_roles/server_wide"), |b| {
            b.iter(|| index.has(black_box(who), black_box(None), Permission::ManageChannels))
        });
        group.bench_function(format!("one/{roles}_roles/channel_overrides"), |b| {
            b.iter(|| {
                index.has(
                    black_box(who),
                    black_box(Some(77)),
                    Permission::ReadMessages,
                )
            })
        });
    }
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 256 << 20).expect("store");
    let mut rng = Lcg(7);
    let mut order = Vec::new();
    for id in 1..=ROLES {
        let role = RoleRecord {
            id,
            name: format!("role{id}"),
            permissions: rng.set(),
        };
        order.push(id);
        store.insert_role(&role, &order).expect("role");
    }
    for n in 0..100_000u64 {
        let user = UserRecord {
            id: 1_000_000 + n,
            username: format!("user{n}"),
            password_hash: "$scrypt$placeholder".into(),
            email: None,
            flair: None,
            role_ids: (0..(n % 5)).map(|_| 1 + rng.next() % ROLES).collect(),
            created_ms: 0,
        };
        store.insert_user(&user).expect("user");
    }
    let mut group = c.benchmark_group("rebuild");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("index_from_storage/100000_users/1000_roles", |b| {
        b.iter(|| load_permission_index(&store).expect("load"))
    });
    group.finish();
    // User search (`GET /api/users?name=`) reads only the matching range of the name index:
    // "user1234" matches 11 of the 100,000 names, "user1" 11,111 (the first 20 are returned).
    let mut group = c.benchmark_group("user_search");
    for prefix in ["user1234", "user1", "nobody"] {
        group.bench_function(format!("prefix_{prefix}/100000_users"), |b| {
            b.iter(|| {
                store
                    .users_by_name_prefix(black_box(prefix), 0, 20)
                    .expect("search")
            })
        });
    }
    // Any part of a name (the in-memory trigram index): "r1234" is in 11 names and its rarest
    // trigram in 111; "2345" in 40 names (rarest trigram in ~400); "ser" is in every name, so
    // its posting list holds all 100,000, walked in name order until the page is full.
    for part in ["r1234", "2345", "ser", "zzz"] {
        group.bench_function(format!("part_{part}/100000_users"), |b| {
            b.iter(|| {
                store
                    .users_by_name_part(black_box(part), 0, 20)
                    .expect("search")
            })
        });
    }
    group.finish();
    drop(store);
    index_footprint();
}

/// Counts the bytes live on the heap, for the index footprint below.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes held by the trigram and email index for 100,000 names, and the time to build it
/// (done once when storage opens), printed once per run.
fn index_footprint() {
    let names: Vec<(u64, String)> = (0..100_000u64).map(|n| (n, format!("user{n}"))).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let start = std::time::Instant::now();
    let index = UserIndex::build(names.iter().map(|(id, name)| (*id, name.as_str(), None)));
    let took = start.elapsed();
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "user index: 100000 names built in {:.1} ms, {:.1} MiB on the heap ({} bytes per user)",
        took.as_secs_f64() * 1e3,
        held as f64 / (1 << 20) as f64,
        held / 100_000
    );
    let start = std::time::Instant::now();
    for n in 0..1000u64 {
        index.insert(200_000 + n, &format!("user{}x", n * 97), None);
    }
    println!(
        "user index: one registration at 100000 names: {:.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
    black_box(index);
}

criterion_group!(benches, resolution, rebuild);
criterion_main!(benches);
