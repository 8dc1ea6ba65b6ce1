//! Cluster-wide names: the registry's public calls on [`ClusterSystem`].

use std::future::Future;

use actix::Recipient;
use rand::RngExt;

use super::ClusterSystem;
use crate::registry::state::{Command, Location, Outcome, Supervision};
use crate::registry::{
    MigrateError, NameEntry, NameEvent, RecoveryReport, Registry, RegistryError, RegistryStatus,
    ReleaseReason, location, validate_name,
};
use crate::remote::{DistributedActor, RemoteAddr, RemoteError};

impl ClusterSystem {
    /// Registers `addr` under `name`, cluster-wide.
    ///
    /// Returns the registration (with its version) once a majority of the registry's voters
    /// has committed it; from then on every node's [`lookup`](Self::lookup) finds it.
    /// Registering the same actor under the same name again succeeds with the existing entry.
    /// The name is released automatically when the actor stops or its node goes Down.
    ///
    /// # Errors
    /// - [`RegistryError::NameTaken`]: another actor holds the name (nothing changed);
    /// - [`RegistryError::InvalidName`];
    /// - [`RegistryError::NoQuorum`]: this node cannot reach a majority (nothing changed);
    /// - [`RegistryError::Timeout`]: no answer in time; the registration may still commit;
    /// - [`RegistryError::NotFormed`]: fewer members are up than the registry forms with;
    /// - [`RegistryError::Unavailable`]: the registry is forming.
    pub async fn register_name<A: DistributedActor>(
        &self,
        name: &str,
        addr: &RemoteAddr<A>,
    ) -> Result<NameEntry, RegistryError> {
        validate_name(name)?;
        self.check_host(addr)?;
        let cmd = Command::Register {
            name: name.to_owned(),
            location: location_of(addr),
            claim: None,
        };
        let registry = self.registry()?;
        match registry.write(cmd).await? {
            Outcome::Bound(entry) => Ok(entry),
            Outcome::Taken { node, .. } => Err(RegistryError::NameTaken {
                name: name.to_owned(),
                node,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The actor registered as `name`, creating it with `make` if there is none.
    ///
    /// Among any number of concurrent callers on any nodes, exactly one runs `make`; the
    /// others wait for its actor and get its address. The winner first *claims* the name
    /// through the registry (a claim held by a node that goes Down is released), then runs
    /// `make`, then binds the name to the new actor. If `make` fails, the claim is released
    /// and the error returned as [`RegistryError::Create`].
    ///
    /// ```no_run
    /// # use actix_cluster::prelude::*;
    /// # use actix::prelude::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Counter;
    /// # impl Actor for Counter { type Context = Context<Self>; }
    /// # impl DistributedActor for Counter { const NAME: &'static str = "c"; fn messages(_: &mut Messages<Self>) {} }
    /// # async fn f(system: ClusterSystem) -> Result<(), Box<dyn std::error::Error>> {
    /// let counter: RemoteAddr<Counter> = system
    ///     .register_name_or_get("counter/main", || {
    ///         let system = system.clone();
    ///         async move { Ok(system.start_actor(Counter)) }
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_name_or_get<A, F, Fut>(
        &self,
        name: &str,
        make: F,
    ) -> Result<RemoteAddr<A>, RegistryError>
    where
        A: DistributedActor,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<RemoteAddr<A>, RemoteError>>,
    {
        let make = |_claim| async move { make().await.map(|addr| (addr, None)) };
        match self.name_or_create(name, make).await {
            Ok((addr, _)) => Ok(addr),
            Err(Created::Registry(e)) => Err(e),
            Err(Created::Make(e)) => Err(RegistryError::Create(e)),
        }
    }

    /// [`register_name_or_get`](Self::register_name_or_get) with the creator's own error
    /// type; a creator that returns a [`Supervision`] makes the name supervised (bound with
    /// `Supervise`). `make` gets the log index of this call's claim, which fences whatever it
    /// starts: any later claim of the name has a higher one. Returns the address and, when
    /// this call created the actor, its registration (an actor that was already registered
    /// comes as an address that follows the name).
    pub(super) async fn name_or_create<A, E, F, Fut>(
        &self,
        name: &str,
        make: F,
    ) -> Result<(RemoteAddr<A>, Option<NameEntry>), Created<E>>
    where
        A: DistributedActor,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<(RemoteAddr<A>, Option<Supervision>), E>>,
    {
        let found = |entry: &NameEntry| -> Result<(RemoteAddr<A>, Option<NameEntry>), Created<E>> {
            Ok((self.addr_for::<A>(entry)?, None))
        };
        validate_name(name)?;
        let registry = self.registry()?;
        if !registry.is_member() {
            // A claim is held by the caller's node and released when that node goes Down;
            // client nodes are not members, so theirs could never be released.
            return Err(Created::Registry(RegistryError::Unavailable(
                "register_name_or_get needs a member node; client nodes cannot hold claims".into(),
            )));
        }
        let deadline = tokio::time::Instant::now() + registry.config.request_timeout;
        let (token, claimed_at) = loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(RegistryError::Timeout(registry.config.request_timeout).into());
            }
            // Already there: no write, but a confirmation that this replica is current (a
            // binding released elsewhere may still be in it, and handing out a released actor
            // would break "one actor per name").
            if registry.local_entry(name).is_some() {
                match registry.linearizable_get(name).await {
                    Ok(entry) => return found(&entry),
                    Err(RegistryError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let token = rand::rng().random::<u64>() | 1;
            let claim = Command::Claim {
                name: name.to_owned(),
                node: self.node_id().clone(),
                token,
            };
            match registry.write(claim).await? {
                Outcome::Claimed { index, .. } => break (token, index),
                Outcome::Taken {
                    entry: Some(entry), ..
                } => return found(&entry),
                Outcome::Taken { entry: None, .. } => {
                    // Another caller is creating it: wait for the binding. If its claim is
                    // released instead (its node died, its `make` failed), claim again.
                    match registry.wait_for_binding(name, deadline).await {
                        Ok(entry) => return found(&entry),
                        Err(RegistryError::NotFound(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                other => return Err(unexpected(other).into()),
            }
        };
        let (addr, supervision) = match make(claimed_at).await {
            Ok(made) => made,
            Err(e) => {
                let release = Command::Unregister {
                    name: name.to_owned(),
                    version: Some(token),
                    reason: ReleaseReason::Unregistered,
                };
                let _ = registry.write(release).await;
                return Err(Created::Make(e));
            }
        };
        let bind = match supervision {
            None => Command::Register {
                name: name.to_owned(),
                location: location_of(&addr),
                claim: Some(token),
            },
            Some(supervision) => Command::Supervise {
                name: name.to_owned(),
                location: location_of(&addr),
                claim: Some(token),
                supervision: Box::new(supervision),
            },
        };
        match registry.write(bind).await? {
            Outcome::Bound(entry) => Ok((addr, Some(entry))),
            Outcome::Taken { node, .. } => Err(RegistryError::NameTaken {
                name: name.to_owned(),
                node,
            }
            .into()),
            other => Err(unexpected(other).into()),
        }
    }

    /// Releases `name`, whoever holds it. Returns the registration that ended, or `None` if
    /// the name was not registered.
    pub async fn unregister_name(&self, name: &str) -> Result<Option<NameEntry>, RegistryError> {
        validate_name(name)?;
        let cmd = Command::Unregister {
            name: name.to_owned(),
            version: None,
            reason: ReleaseReason::Unregistered,
        };
        match self.registry()?.write(cmd).await? {
            Outcome::Released(entry) => Ok(entry),
            other => Err(unexpected(other)),
        }
    }

    /// Moves the running actor registered as `name` to node `to` and returns its new
    /// registration; the name, and every [`RemoteAddr`] obtained by name, follow it.
    ///
    /// The actor's type must declare [`Messages::migratable`](crate::Messages::migratable)
    /// (its `Serialize` impl is the state that moves) and `to` must have registered the type.
    /// The node hosting the actor runs the move: it holds the messages that arrive for the
    /// actor from the network, lets the actor handle what its mailbox already holds,
    /// serializes it, has `to` start it from that state, moves the name in one registry write,
    /// and then stops the old actor and forwards what it held, and whatever still arrives for
    /// the old address, to the new one in arrival order. No message that reached the old node
    /// is lost, and a sender's messages keep their order (see `docs/user-guide.md` §9 for the
    /// window in which a message sent to the old address can be overtaken). A supervised name
    /// restarts from the migrated state from then on. Moving to the node it is on does
    /// nothing.
    ///
    /// # Errors
    /// - [`MigrateError::NotMigratable`], [`MigrateError::Target`], [`MigrateError::Conflict`]:
    ///   nothing moved, the actor goes on where it was;
    /// - [`MigrateError::Registry`]: the name is not registered (`NotFound`), or the registry
    ///   write of the move stayed in doubt: then both actors were stopped, the name is
    ///   released and a supervised name restarts;
    /// - [`MigrateError::Remote`]: the hosting node did not answer; the move may have
    ///   happened.
    pub async fn migrate(&self, name: &str, to: &str) -> Result<NameEntry, MigrateError> {
        validate_name(name)?;
        self.registry()?.migrate(name, to).await
    }

    /// The actor registered as `name`, from this node's replica (no network on members).
    ///
    /// The replica may lag the leader by the replication delay; a name registered by a call
    /// that has returned anywhere is found here within that delay. Use
    /// [`lookup_linearizable`](Self::lookup_linearizable) to see every registration that
    /// completed before the call. The returned address follows the name: if the name is
    /// released and registered to another actor, messages go to the new actor.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::TypeMismatch`]; on client nodes (which
    /// ask a member) also the errors of a remote call.
    pub async fn lookup<A: DistributedActor>(
        &self,
        name: &str,
    ) -> Result<RemoteAddr<A>, RegistryError> {
        let entry = self.lookup_entry(name).await?;
        self.addr_for::<A>(&entry)
    }

    /// Like [`lookup`](Self::lookup), but first confirms with the registry leader (and a
    /// majority of voters) that this node's replica holds every registration committed before
    /// the call. Fails with [`RegistryError::NoQuorum`] on a minority side.
    pub async fn lookup_linearizable<A: DistributedActor>(
        &self,
        name: &str,
    ) -> Result<RemoteAddr<A>, RegistryError> {
        validate_name(name)?;
        let entry = self.registry()?.linearizable_get(name).await?;
        self.addr_for::<A>(&entry)
    }

    /// The registration of `name` in this node's replica, with its version.
    pub async fn lookup_entry(&self, name: &str) -> Result<NameEntry, RegistryError> {
        validate_name(name)?;
        self.registry()?.get(name).await
    }

    /// Every registered name starting with `prefix` (`""` for all), in name order, from this
    /// node's replica.
    pub async fn list_names(&self, prefix: &str) -> Result<Vec<NameEntry>, RegistryError> {
        self.registry()?.list(prefix).await
    }

    /// Sends `recipient` a [`NameEvent::Snapshot`] of the names under `prefix`, then every
    /// registration and release under it as this node's replica applies them, until the
    /// recipient stops. Not available on client nodes, which hold no replica.
    pub fn watch_names(
        &self,
        prefix: &str,
        recipient: Recipient<NameEvent>,
    ) -> Result<(), RegistryError> {
        let registry = self.registry()?;
        if !registry.is_member() {
            return Err(RegistryError::Unavailable(
                "client nodes hold no replica to watch".into(),
            ));
        }
        registry.replica.watch(prefix.to_owned(), recipient);
        Ok(())
    }

    /// The registry as this node sees it (on client nodes: as the member it asks sees it).
    pub async fn registry_status(&self) -> Result<RegistryStatus, RegistryError> {
        self.registry()?.status().await
    }

    /// Removes node `node` from the registry's voters for good: an operator action for a
    /// voter that is gone and will not come back (`ctl registry remove-voter`). A live spare
    /// (a member that may vote but does not) takes its place when there is one; otherwise the
    /// voter set shrinks by one.
    ///
    /// Refused with [`RegistryError::Refused`] when `node` is not a voter, when it is alive
    /// (reconciliation would add it straight back: stop it or let it leave first), or when
    /// the new voter set would hold fewer than a quorum of live voters. Returns the registry
    /// as the leader sees it afterwards.
    pub async fn registry_remove_voter(&self, node: &str) -> Result<RegistryStatus, RegistryError> {
        self.registry()?.remove_voter(node).await
    }

    /// Re-forms the registry from member `from`'s replica after a majority of its voters was
    /// lost for good (`ctl registry recover --from`), the way etcd's `--force-new-cluster`
    /// does: `from` becomes the only voter of a new term over its whole log, and the voter
    /// set then grows back to [`voters`](crate::RegistryConfig::voters) as members are Up.
    /// The names in `from`'s replica survive; entries only the lost voters held do not.
    ///
    /// Refused with [`RegistryError::Refused`] when a quorum of the old voters still answers
    /// (the registry recovers by itself, and recovering would fork it), when another member
    /// that answers holds a longer log (recover from that one: `ctl registry` on each member
    /// shows `last_log`), or when `from` holds no registry state.
    pub async fn registry_recover(&self, from: &str) -> Result<RecoveryReport, RegistryError> {
        self.registry()?.recover(from).await
    }

    pub(super) fn registry(&self) -> Result<&std::sync::Arc<Registry>, RegistryError> {
        if self.remote().is_stopped() {
            return Err(RegistryError::SystemStopped);
        }
        Ok(&self.node.registry)
    }

    /// Client nodes are not members: nothing would release a name held by their actors.
    fn check_host<A: DistributedActor>(&self, addr: &RemoteAddr<A>) -> Result<(), RegistryError> {
        if addr.node() == *self.node_id() && self.node.config.role == crate::node::NodeRole::Client
        {
            return Err(RegistryError::Unavailable(
                "actors on client nodes cannot hold cluster-wide names".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn addr_for<A: DistributedActor>(
        &self,
        entry: &NameEntry,
    ) -> Result<RemoteAddr<A>, RegistryError> {
        if entry.actor_type != A::NAME {
            return Err(RegistryError::TypeMismatch {
                name: entry.name.clone(),
                expected: A::NAME.to_owned(),
                found: entry.actor_type.clone(),
            });
        }
        Ok(RemoteAddr::by_name(
            self.remote(),
            &entry.name,
            &location(entry),
        ))
    }
}

fn location_of<A: DistributedActor>(addr: &RemoteAddr<A>) -> Location {
    // One registration's node, address and actor id, even if a named address moves meanwhile.
    let ep = addr.endpoint();
    Location {
        node: ep.node.clone(),
        node_addr: ep.node_addr,
        actor_type: A::NAME.to_owned(),
        actor_id: ep.actor,
    }
}

fn unexpected(outcome: Outcome) -> RegistryError {
    RegistryError::Unavailable(format!("unexpected registry outcome {outcome:?}"))
}

/// Why [`ClusterSystem::name_or_create`] failed: the registry, or the creator.
pub(super) enum Created<E> {
    Registry(RegistryError),
    Make(E),
}

impl<E> From<RegistryError> for Created<E> {
    fn from(e: RegistryError) -> Self {
        Created::Registry(e)
    }
}
