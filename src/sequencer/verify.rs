//! The first stage: drains what producers queued into one group and checks its signatures on
//! every core (strict verification), while the sequencer commits the group before.

use super::{Job, Verified};
use std::sync::mpsc as std_mpsc;
use tokio::sync::mpsc;

pub(super) fn verify_loop(
    mut rx: mpsc::Receiver<Job>,
    out: std_mpsc::SyncSender<Verified>,
    max_group: usize,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].envelopes.len();
        while count < max_group {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.envelopes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut envelopes = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.envelopes.len(), job.reply));
            envelopes.extend(job.envelopes);
        }
        let items = crate::ledger::verified(envelopes.into_iter().map(Ok).collect());
        if out.send(Verified { items, replies }).is_err() {
            return;
        }
    }
}
