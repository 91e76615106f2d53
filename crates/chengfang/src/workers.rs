//! Batch work on every core for the line-oriented commands (`hunt`, `scan`): persistent workers,
//! each taking an interleaved share of every batch, results handed back in worker order.

use std::iter::{Skip, StepBy};
use std::sync::{Arc, mpsc};

use anyhow::Result;

/// One worker's share of a batch: items `k`, `k + workers`, … (interleaved, not contiguous:
/// expensive items cluster in real input).
pub type Share<'a, I> = StepBy<Skip<std::slice::Iter<'a, I>>>;

/// Worker `k`'s share of `batch` among `workers`.
pub fn share<I>(batch: &[I], k: usize, workers: usize) -> Share<'_, I> {
    batch.iter().skip(k).step_by(workers)
}

/// Run `work` over each worker's [`Share`] of every batch `next_batch` yields, on one
/// persistent thread per core (1–8), and give each batch with its workers' results, in worker
/// order, to `done`: result `j % workers` holds item `j` as the `j / workers`-th of its share. The workers live for the whole run: threads spawned
/// per batch each started with an empty allocator heap, whose fresh pages the kernel zeroed
/// batch after batch (docs/benchmarks.md, hunting). A worker that stopped is an error, never a
/// wait for ever.
pub fn interleaved<I, R>(
    work: impl Fn(Share<'_, I>) -> R + Sync,
    mut next_batch: impl FnMut() -> Result<Option<Vec<I>>>,
    mut done: impl FnMut(&[I], Vec<R>) -> Result<()>,
) -> Result<()>
where
    I: Send + Sync,
    R: Send,
{
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let work = &work;
    std::thread::scope(|scope| {
        let mut jobs = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for k in 0..workers {
            let (tx, rx) = mpsc::channel::<Arc<Vec<I>>>();
            let (res_tx, res_rx) = mpsc::channel::<R>();
            jobs.push(tx);
            results.push(res_rx);
            scope.spawn(move || {
                for batch in rx {
                    if res_tx.send(work(share(&batch, k, workers))).is_err() {
                        break;
                    }
                }
            });
        }
        let stopped = || anyhow::anyhow!("a worker thread stopped");
        while let Some(batch) = next_batch()? {
            let batch = Arc::new(batch);
            for tx in &jobs {
                tx.send(batch.clone()).map_err(|_| stopped())?;
            }
            let rs = results
                .iter()
                .map(|rx| rx.recv())
                .collect::<Result<Vec<R>, _>>()
                .map_err(|_| stopped())?;
            done(&batch, rs)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_once_in_worker_order() {
        let mut batches = (0..5).map(|b| (0..37).map(|i| b * 100 + i).collect::<Vec<u32>>());
        let mut seen = Vec::new();
        super::interleaved(
            |share| share.copied().collect::<Vec<u32>>(),
            || Ok(batches.next()),
            |batch, shares| {
                let w = shares.len();
                let mut joined = Vec::new();
                for j in 0..batch.len() {
                    joined.push(shares[j % w][j / w]);
                }
                assert_eq!(joined, batch);
                seen.extend(joined);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 5 * 37);
    }
}
