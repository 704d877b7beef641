//! Carries a schedule out against the stack: each fault at its offset, healed when its
//! time is up, one after another.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::schedule::{Backend, Fault, Planned};
use crate::stack::{Backends, ServerProcess};

/// A fault as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// What was planned.
    pub fault: Fault,
    /// When it began, since the rush began.
    pub began: Duration,
    /// When it was healed (the process or service answering again, the network passing).
    pub healed: Duration,
    /// Why it could not be carried out or healed, if it could not.
    pub error: Option<String>,
}

/// The service's processes, by role.
pub struct Processes {
    /// `--role api`.
    pub apis: Vec<ServerProcess>,
    /// `--role worker`.
    pub workers: Vec<ServerProcess>,
}

impl Processes {
    /// Processes that exited without being killed by the schedule.
    pub fn unplanned_exits(&mut self) -> Vec<String> {
        self.apis
            .iter_mut()
            .chain(self.workers.iter_mut())
            .flat_map(ServerProcess::unplanned_exits)
            .collect()
    }
}

/// Injects every fault of `plan` at `started + at`; returns what was done, in order.
pub async fn inject(
    plan: &[Planned],
    backends: &Backends,
    processes: &mut Processes,
    started: Instant,
    mut on_fault: impl FnMut(&Injected),
) -> Vec<Injected> {
    let mut done = Vec::with_capacity(plan.len());
    for planned in plan {
        tokio::time::sleep_until((started + planned.at).into()).await;
        let began = started.elapsed();
        let error = carry_out(planned.fault, backends, processes).await.err();
        let injected = Injected {
            fault: planned.fault,
            began,
            healed: started.elapsed(),
            error,
        };
        on_fault(&injected);
        done.push(injected);
    }
    done
}

/// One fault: done, held for its length, healed.
async fn carry_out(
    fault: Fault,
    backends: &Backends,
    processes: &mut Processes,
) -> Result<(), String> {
    match fault {
        Fault::KillApi { index, down } => {
            let process = &mut processes.apis[index];
            process.kill();
            tokio::time::sleep(down).await;
            process.restart().await
        }
        Fault::KillWorker { index, down } => {
            let process = &mut processes.workers[index];
            process.kill();
            tokio::time::sleep(down).await;
            process.restart().await
        }
        Fault::KillBackend { backend, down } => {
            // The harness script blocks while it kills and starts; the rush goes on.
            tokio::task::block_in_place(|| backends.kill(backend))?;
            tokio::time::sleep(down).await;
            tokio::task::block_in_place(|| backends.restart(backend))
        }
        Fault::Network {
            backend,
            fault,
            lasting,
        } => {
            backends.disturb(backend, fault);
            tokio::time::sleep(lasting).await;
            backends.heal(backend);
            Ok(())
        }
        Fault::RedisLostTwice { gap } => {
            for pause in [gap, Duration::ZERO] {
                tokio::task::block_in_place(|| backends.kill(Backend::Redis))?;
                tokio::task::block_in_place(|| backends.restart(Backend::Redis))?;
                tokio::time::sleep(pause).await;
            }
            Ok(())
        }
        Fault::LateCommits { lasting } => {
            backends.hold_commits(true).await?;
            tokio::time::sleep(lasting).await;
            backends.hold_commits(false).await
        }
    }
}
