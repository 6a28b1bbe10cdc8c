//! The accounting path alone, as the reference design's benchmark calls it: a ticket hold and a
//! goodie hold (`reserve`), then their posts (`commit`). No order, no store: it measures what
//! TigerBeetle and the batcher do. Its holds carry their own code, so these endpoints can never
//! post a customer's hold (see `accounting::bench_post`).

use super::app::{App, FlowError};
use crate::accounting::{self, Resource, TransferResult};
use crate::ids::new_id;

impl App {
    /// A ticket hold and a goodie hold; the goodie's id only if the pool had one.
    pub async fn reserve(&self, cls: Option<&str>) -> Result<(u128, Option<u128>), FlowError> {
        let class = match cls {
            Some(cls) => {
                self.config.class(cls).ok_or_else(|| FlowError::BadRequest(format!("unknown ticket class {cls:?}")))?
            }
            None => &self.config.classes[0],
        };
        let (ticket, goodie) = (new_id(), new_id());
        let ledger = self.config.ledger;
        let timeout_s = self.config.hold_timeout_s;
        let results = self
            .transfers(vec![
                accounting::bench_hold(ledger, Resource::class(&class.id), ticket, timeout_s),
                accounting::bench_hold(ledger, Resource::GOODIES, goodie, timeout_s),
            ])
            .await?;
        match results[0] {
            r if r.is_success() => Ok((ticket, results[1].is_success().then_some(goodie))),
            TransferResult::ExceedsCredits => Err(FlowError::SoldOut { cls: class.id.clone() }),
            other => Err(FlowError::Unavailable(format!("ticket hold refused: {other:?}"))),
        }
    }

    /// Posts holds made by `reserve` (and only those).
    pub async fn commit(&self, ticket: u128, goodie: Option<u128>) -> Result<Vec<TransferResult>, FlowError> {
        let mut transfers = vec![accounting::bench_post(ticket)];
        transfers.extend(goodie.map(accounting::bench_post));
        self.transfers(transfers).await
    }
}
