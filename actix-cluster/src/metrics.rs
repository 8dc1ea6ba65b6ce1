//! Every metric the library records, named and described in one place.
//!
//! The library only talks to the [`metrics`] facade; an application installs a recorder (for
//! example a Prometheus exporter) to collect them. [`describe`] gives each metric its unit and
//! help text, so an exporter shows them; `ClusterSystem::start` calls it. Each layer records
//! through the functions below, never with a metric name of its own, so that this file is the
//! complete list (`docs/operations.md` prints it).

use metrics::Unit;

/// Bytes written to peers' sockets (after TLS).
pub(crate) const BYTES_WRITTEN: &str = "actix_cluster_bytes_written_total";
/// Bytes read from peers' sockets.
pub(crate) const BYTES_READ: &str = "actix_cluster_bytes_read_total";
/// Counted messages (tells, requests, replies) written to peers.
pub(crate) const MESSAGES_SENT: &str = "actix_cluster_messages_sent_total";
/// Messages dropped before reaching the wire, by reason.
pub(crate) const MESSAGES_DROPPED: &str = "actix_cluster_messages_dropped_total";
/// Tells that arrived for actors that do not exist or could not decode them.
pub(crate) const MESSAGES_UNDELIVERABLE: &str = "actix_cluster_messages_undeliverable_total";
/// Connections that completed the handshake.
pub(crate) const CONNECTIONS_ESTABLISHED: &str = "actix_cluster_connections_established_total";
/// Connections whose reader is running.
pub(crate) const CONNECTIONS_OPEN: &str = "actix_cluster_connections_open";
/// Connections refused or failed during the handshake.
pub(crate) const HANDSHAKES_FAILED: &str = "actix_cluster_handshakes_failed_total";
/// Inbound connections closed by admission control, by event.
pub(crate) const ADMISSION: &str = "actix_cluster_admission_closed_total";
/// Membership messages not sent (peer down, lane full).
pub(crate) const MEMBERSHIP_DROPPED: &str = "actix_cluster_membership_dropped_total";
/// Membership messages from peers that did not decode.
pub(crate) const MEMBERSHIP_MALFORMED: &str = "actix_cluster_membership_malformed_total";
/// Registry (Raft) frames dropped: malformed, unexpected, late, or unsendable.
pub(crate) const REGISTRY_FRAMES_DROPPED: &str = "actix_cluster_registry_frames_dropped_total";
/// Registry snapshots received and installed.
pub(crate) const REGISTRY_SNAPSHOTS_RECEIVED: &str =
    "actix_cluster_registry_snapshots_received_total";
/// Actors spawned by placement strategy, by strategy and where they went.
pub(crate) const ACTORS_SPAWNED: &str = "actix_cluster_actors_spawned_total";
/// Restart decisions for supervised actors, by outcome.
pub(crate) const ACTOR_RESTARTS: &str = "actix_cluster_actor_restarts_total";
/// Migrations this node ran as the source, by outcome.
pub(crate) const ACTOR_MIGRATIONS: &str = "actix_cluster_actor_migrations_total";
/// State store writes and deletes, by backend and outcome.
pub(crate) const STATE_WRITES: &str = "actix_cluster_state_writes_total";
/// Write transactions (each one fsync) of the embedded state store.
pub(crate) const STATE_COMMITS: &str = "actix_cluster_state_commits_total";
/// Counter: virtual actor activations asked for by this node, by type and outcome.
pub(crate) const VIRTUAL_ACTIVATIONS: &str = "actix_cluster_virtual_activations_total";
/// Counter: virtual actor activations passivated on this node.
pub(crate) const VIRTUAL_PASSIVATIONS: &str = "actix_cluster_virtual_passivations_total";
/// Counter: virtual actor activations passivated to stay within the node's activation limit.
pub(crate) const VIRTUAL_EVICTIONS: &str = "actix_cluster_virtual_evictions_total";
/// Counter: reminder ticks this node fired as registry leader.
pub(crate) const REMINDERS_FIRED: &str = "actix_cluster_reminders_fired_total";
/// Gauge: virtual actor activations hosted on this node.
pub(crate) const VIRTUAL_ACTIVE: &str = "actix_cluster_virtual_active";

/// Registers unit and help text of every metric with the installed recorder (a no-op without
/// one). Idempotent.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        BYTES_WRITTEN,
        Unit::Bytes,
        "Bytes written to peers' sockets, after TLS."
    );
    describe_counter!(BYTES_READ, Unit::Bytes, "Bytes read from peers' sockets.");
    describe_counter!(
        MESSAGES_SENT,
        Unit::Count,
        "Messages (tells, requests, replies) written to peers."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        Unit::Count,
        "Messages dropped before reaching the wire; label reason: queue_full, send_failed (do_send) or unreachable (queued for a node that became unreachable)."
    );
    describe_counter!(
        MESSAGES_UNDELIVERABLE,
        Unit::Count,
        "Tells that arrived for actors that do not exist here or could not be decoded."
    );
    describe_counter!(
        CONNECTIONS_ESTABLISHED,
        Unit::Count,
        "Connections to peers that completed the handshake."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        Unit::Count,
        "Connections to peers whose reader is running."
    );
    describe_counter!(
        HANDSHAKES_FAILED,
        Unit::Count,
        "Connections refused or failed during the TLS or cluster handshake."
    );
    describe_counter!(
        ADMISSION,
        Unit::Count,
        "Inbound connections closed by admission control; label event: handshake_evicted (the oldest handshake, to make room), connection_refused (max_connections established) or over_budget (largest partial frame over the inbound memory budget)."
    );
    describe_counter!(
        MEMBERSHIP_DROPPED,
        Unit::Count,
        "Membership messages not sent because the peer was down or its priority lane full."
    );
    describe_counter!(
        MEMBERSHIP_MALFORMED,
        Unit::Count,
        "Membership messages from peers that did not decode (dropped)."
    );
    describe_counter!(
        REGISTRY_FRAMES_DROPPED,
        Unit::Count,
        "Registry (Raft) frames dropped: malformed, unexpected, late, or unsendable."
    );
    describe_counter!(
        REGISTRY_SNAPSHOTS_RECEIVED,
        Unit::Count,
        "Registry snapshots received from the leader and installed."
    );
    describe_counter!(
        ACTORS_SPAWNED,
        Unit::Count,
        "Actors this node spawned with ClusterSystem::spawn; label placement: local, node, round_robin, random, least_loaded or consistent_hash; label target: local (this node) or remote."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        Unit::Count,
        "Restart decisions this node made as registry leader for supervised actors; label outcome: restarted (a node was chosen and the name claimed for it) or exhausted (the restart policy allows no more)."
    );
    describe_counter!(
        ACTOR_MIGRATIONS,
        Unit::Count,
        "Migrations of actors hosted here (ClusterSystem::migrate, rebalancing); label outcome: moved, not_migratable, target_refused, conflict or failed."
    );
    describe_counter!(
        STATE_WRITES,
        Unit::Count,
        "State store writes and deletes; label backend: memory, redb or redis; label outcome: ok, conflict (another write came first), fenced (a newer activation owns the key), refused (bad key or too large) or error (the backend failed)."
    );
    describe_counter!(
        STATE_COMMITS,
        Unit::Count,
        "Write transactions of the embedded (redb) state store, each one fsync; writes divided by this is the group commit's batch."
    );
    describe_counter!(
        VIRTUAL_ACTIVATIONS,
        Unit::Count,
        "Virtual actor activations this node asked for; label actor_type; label outcome: activated or failed."
    );
    describe_counter!(
        VIRTUAL_PASSIVATIONS,
        Unit::Count,
        "Virtual actor activations passivated on this node (idle, or deactivated)."
    );
    describe_counter!(
        VIRTUAL_EVICTIONS,
        Unit::Count,
        "Virtual actor activations passivated on this node to stay within its activation limit (least recently used first)."
    );
    describe_counter!(
        REMINDERS_FIRED,
        Unit::Count,
        "Virtual actor reminder ticks this node fired as registry leader (each tick once, missed ticks skipped)."
    );
    describe_gauge!(
        VIRTUAL_ACTIVE,
        Unit::Count,
        "Virtual actor activations hosted on this node."
    );
}

pub(crate) fn bytes_written(n: u64) {
    metrics::counter!(BYTES_WRITTEN).increment(n);
}

pub(crate) fn bytes_read(n: u64) {
    metrics::counter!(BYTES_READ).increment(n);
}

pub(crate) fn messages_sent(n: u64) {
    metrics::counter!(MESSAGES_SENT).increment(n);
}

/// `reason`: `queue_full`, `send_failed` or `unreachable`.
pub(crate) fn messages_dropped(reason: &'static str, n: u64) {
    metrics::counter!(MESSAGES_DROPPED, "reason" => reason).increment(n);
}

pub(crate) fn message_undeliverable() {
    metrics::counter!(MESSAGES_UNDELIVERABLE).increment(1);
}

pub(crate) fn connection_established() {
    metrics::counter!(CONNECTIONS_ESTABLISHED).increment(1);
}

pub(crate) fn connections_open(n: usize) {
    metrics::gauge!(CONNECTIONS_OPEN).set(n as f64);
}

pub(crate) fn handshake_failed() {
    metrics::counter!(HANDSHAKES_FAILED).increment(1);
}

/// `event`: `handshake_evicted`, `connection_refused` or `over_budget`.
pub(crate) fn admission(event: &'static str, n: u64) {
    metrics::counter!(ADMISSION, "event" => event).increment(n);
}

pub(crate) fn membership_dropped() {
    metrics::counter!(MEMBERSHIP_DROPPED).increment(1);
}

pub(crate) fn membership_malformed() {
    metrics::counter!(MEMBERSHIP_MALFORMED).increment(1);
}

pub(crate) fn registry_frame_dropped() {
    metrics::counter!(REGISTRY_FRAMES_DROPPED).increment(1);
}

pub(crate) fn registry_snapshot_received() {
    metrics::counter!(REGISTRY_SNAPSHOTS_RECEIVED).increment(1);
}

/// `placement`: the strategy's label; `remote`: the actor went to another node.
pub(crate) fn actor_spawned(placement: &'static str, remote: bool) {
    let target = if remote { "remote" } else { "local" };
    metrics::counter!(ACTORS_SPAWNED, "placement" => placement, "target" => target).increment(1);
}

/// `outcome`: `moved`, `not_migratable`, `target_refused`, `conflict` or `failed`.
pub(crate) fn actor_migrated(outcome: &'static str) {
    metrics::counter!(ACTOR_MIGRATIONS, "outcome" => outcome).increment(1);
}

/// `backend`: `memory`, `redb` or `redis`; `outcome`: `ok`, `conflict`, `fenced`, `refused` or
/// `error`.
pub(crate) fn state_write(backend: &'static str, outcome: &'static str) {
    metrics::counter!(STATE_WRITES, "backend" => backend, "outcome" => outcome).increment(1);
}

pub(crate) fn state_commit() {
    metrics::counter!(STATE_COMMITS).increment(1);
}

/// `outcome`: `activated` or `failed`.
pub(crate) fn virtual_activation(actor_type: &'static str, outcome: &'static str) {
    metrics::counter!(VIRTUAL_ACTIVATIONS, "actor_type" => actor_type, "outcome" => outcome)
        .increment(1);
}

pub(crate) fn virtual_passivation() {
    metrics::counter!(VIRTUAL_PASSIVATIONS).increment(1);
}

pub(crate) fn reminder_fired() {
    metrics::counter!(REMINDERS_FIRED).increment(1);
}

pub(crate) fn virtual_evicted() {
    metrics::counter!(VIRTUAL_EVICTIONS).increment(1);
}

pub(crate) fn virtual_active(n: usize) {
    metrics::gauge!(VIRTUAL_ACTIVE).set(n as f64);
}

/// `outcome`: `restarted` or `exhausted`.
pub(crate) fn actor_restart(outcome: &'static str) {
    metrics::counter!(ACTOR_RESTARTS, "outcome" => outcome).increment(1);
}
