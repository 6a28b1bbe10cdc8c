//! A payment provider's event: verify, then post (or void) the order's holds in TigerBeetle,
//! then record the outcome. Idempotent per event id, and per order: the first valid outcome is
//! final. Also MockPay's buttons, which sign an event as the provider would.

use std::time::Instant;

use super::app::{store_read, App, FlowError};
use crate::accounting::{self, Resource, TransferResult};
use crate::clock::{now_ms, rfc3339_ms};
use crate::ids::{new_psid, new_ticket_code, parse_order_id};
use crate::metrics::stage;
use crate::order::{Order, OrderStatus, Outcome, Session};
use crate::payment::{self, Event, EventType};
use crate::store::PaymentRecorded;

#[derive(Debug, PartialEq, Eq)]
pub enum PaymentOk {
    Applied(OrderStatus),
    Replay,
}

/// The holds a payment event posts or voids.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holds {
    pub ticket: u128,
    pub goodie: Option<u128>,
}

impl App {
    /// Verifies, then applies a payment provider's event. Idempotent per `idempotency_key`, and
    /// per order: the first valid outcome is final.
    pub async fn payment_event(&self, body: &[u8], signature: Option<&str>) -> Result<PaymentOk, FlowError> {
        let mut clock = Instant::now();
        let event =
            payment::decode_event(self.webhook_secret.as_bytes(), body, signature).map_err(FlowError::BadRequest)?;
        self.metrics.payment_events.add(1);
        // One event per order at a time, from the read of its state to the write of its outcome.
        let _order_lock = self.payment_locks.stripe(&event.payment_session_id).lock().await;
        // One read: the order carries its session's holds. Only a mismatch (or an order written
        // before it did) reads the session, to answer exactly as the session would.
        let found = store_read(self.store.payment_order(&event.order_id))?;
        let (order, record) = match found {
            Some((order, record)) if order.psid == event.payment_session_id => (order, record),
            _ => return Err(self.payment_refusal(&event)?),
        };
        // Providers differ in the case of currency codes (`eur`, `EUR`); the amount is exact.
        if order.amount != event.amount || !order.currency.eq_ignore_ascii_case(&event.currency) {
            return Err(FlowError::BadRequest("amount or currency does not match the payment session".into()));
        }
        let holds = App::holds_of(&order);
        if order.event_keys.contains(&event.idempotency_key) {
            return Ok(PaymentOk::Replay);
        }

        self.metrics.stage(stage::WEBHOOK_VERIFY_READ, &mut clock);
        let outcome = match (order.status, event.kind) {
            (status, kind) if status.is_open() => self.settle(&order, holds, kind).await?,
            (OrderStatus::Failed | OrderStatus::Canceled, EventType::Succeeded) => {
                Some(self.late_success(&order, holds).await?)
            }
            _ => None,
        };
        self.metrics.stage(stage::WEBHOOK_TIGERBEETLE, &mut clock);
        // Encoded here, on whichever core runs this handler; the writer only compares and inserts.
        let prepared = order.prepare_payment(record, &event.idempotency_key, outcome.as_ref());
        let recorded =
            self.store.record_payment(&order.order_id, &event.idempotency_key, outcome, Some(prepared)).await?;
        self.metrics.stage(stage::WEBHOOK_STORE, &mut clock);
        match recorded {
            PaymentRecorded::Order(status) => Ok(PaymentOk::Applied(status)),
            PaymentRecorded::Replay => Ok(PaymentOk::Replay),
            PaymentRecorded::NotFound => Err(FlowError::NotFound("unknown order".into())),
        }
    }

    /// The holds an order's payment moves (copied into the order at checkout).
    pub(super) fn holds_of(order: &Order) -> Holds {
        assert_ne!(order.ticket_hold_id, 0, "orders carry their hold ids");
        Holds { ticket: order.ticket_hold_id, goodie: order.goodie_hold_id }
    }

    /// Moves the holds in TigerBeetle for a payment outcome. `None`: another event already
    /// settled them the other way (it won the race; its write decides the order).
    async fn settle(&self, order: &Order, holds: Holds, kind: EventType) -> Result<Option<Outcome>, FlowError> {
        match kind {
            EventType::Succeeded => self.settle_paid(order, holds).await,
            EventType::Failed => self.settle_unpaid(order, holds, OrderStatus::Failed).await,
            EventType::Canceled => self.settle_unpaid(order, holds, OrderStatus::Canceled).await,
        }
    }

    /// Posts the holds; an expired ticket hold is booked now if a unit is left.
    pub(super) async fn settle_paid(&self, order: &Order, holds: Holds) -> Result<Option<Outcome>, FlowError> {
        let mut transfers = vec![accounting::post(holds.ticket)];
        transfers.extend(holds.goodie.map(accounting::post));
        let results = self.transfers(transfers).await?;
        let got_goodie = results.get(1).is_some_and(|r| r.is_success() || *r == TransferResult::PendingAlreadyPosted);
        let paid_at_ms = Some(now_ms());
        let status = match results[0] {
            r if r.is_success() || r == TransferResult::PendingAlreadyPosted => OrderStatus::Paid,
            TransferResult::PendingAlreadyVoided => return Ok(None),
            TransferResult::PendingExpired => self.book_now(order, holds.ticket).await?,
            other => {
                tracing::error!(?other, order_id = %order.order_id, "posting ticket hold");
                return Err(FlowError::Unavailable(format!("posting the hold refused: {other:?}")));
            }
        };
        let ticket_code = (status == OrderStatus::Paid).then(new_ticket_code);
        Ok(Some(Outcome { status, paid_at_ms, ticket_code, got_goodie }))
    }

    /// Voids the holds for a failed or canceled payment.
    async fn settle_unpaid(
        &self,
        order: &Order,
        holds: Holds,
        status: OrderStatus,
    ) -> Result<Option<Outcome>, FlowError> {
        assert!(matches!(status, OrderStatus::Failed | OrderStatus::Canceled));
        let mut transfers = vec![accounting::void(holds.ticket)];
        transfers.extend(holds.goodie.map(accounting::void));
        let results = self.transfers(transfers).await?;
        match results[0] {
            r if r.is_success() || r == TransferResult::PendingAlreadyVoided => {}
            TransferResult::PendingExpired => {
                // The hold expired. A succeeded event may already have booked the ticket
                // directly and then lost its store write (a crash, a 503): that booking
                // stands, and the provider's retry of it will record PAID.
                if self.booked_after_expiry(holds.ticket).await? {
                    return Ok(None);
                }
            }
            TransferResult::PendingAlreadyPosted => return Ok(None),
            other => {
                tracing::error!(?other, order_id = %order.order_id, "voiding ticket hold");
                return Err(FlowError::Unavailable(format!("voiding the hold refused: {other:?}")));
            }
        }
        Ok(Some(Outcome::without_ticket(status)))
    }

    /// The provider says the payment succeeded after it had said it failed (or was canceled):
    /// the money was taken, and the holds are gone. Book a unit now if one is left (as for a
    /// late payment after expiry, with the same derived id); else the order is paid without a
    /// ticket, to refund. Never silent: logged and counted.
    async fn late_success(&self, order: &Order, holds: Holds) -> Result<Outcome, FlowError> {
        let status = self.book_now(order, holds.ticket).await?;
        assert!(status.is_paid());
        self.metrics.late_successes.add(1);
        tracing::warn!(
            order_id = %order.order_id,
            before = order.status.as_str(),
            after = status.as_str(),
            "a payment succeeded after it had failed or been canceled"
        );
        let ticket_code = (status == OrderStatus::Paid).then(new_ticket_code);
        Ok(Outcome { status, paid_at_ms: Some(now_ms()), ticket_code, got_goodie: false })
    }

    /// Why an event names no order of ours under its session, in the session's terms (the cold
    /// path: the hot one reads only the order).
    fn payment_refusal(&self, event: &Event) -> Result<FlowError, FlowError> {
        let session = store_read(self.store.session(&event.payment_session_id))?;
        Ok(match session {
            None => FlowError::NotFound("unknown payment session".into()),
            Some(session) if session.order_id != event.order_id => {
                FlowError::BadRequest("order_id does not match the payment session".into())
            }
            Some(_) => FlowError::NotFound("unknown order".into()),
        })
    }

    /// Whether a book-now transfer exists for this hold.
    async fn booked_after_expiry(&self, hold_id: u128) -> Result<bool, FlowError> {
        let found = self.lookup(self.ledger.lookup_transfers(vec![accounting::book_now_id(hold_id)])).await?;
        Ok(!found.is_empty())
    }

    /// The hold expired before the payment arrived: take a unit now if one is left.
    async fn book_now(&self, order: &Order, ticket_hold_id: u128) -> Result<OrderStatus, FlowError> {
        let order_num = parse_order_id(&order.order_id).expect("order ids are ours");
        let transfer = accounting::book_now(self.config.ledger, Resource::class(&order.cls), ticket_hold_id, order_num);
        let results = self.transfers(vec![transfer]).await?;
        match results[0] {
            r if r.is_success() => Ok(OrderStatus::Paid),
            TransferResult::ExceedsCredits | TransferResult::IdAlreadyFailed => Ok(OrderStatus::PaidUnfulfilled),
            other => {
                tracing::error!(?other, order_id = %order.order_id, "booking an expired hold");
                Err(FlowError::Unavailable(format!("booking refused: {other:?}")))
            }
        }
    }

    /// MockPay's buttons: sign an event as the provider would and deliver it to the webhook
    /// handler in-process (same verification, same idempotency).
    pub async fn emit(&self, psid: &str, kind: EventType) -> Result<(Session, PaymentOk), FlowError> {
        let session = store_read(self.store.session(psid))?
            .ok_or_else(|| FlowError::NotFound("unknown payment session".into()))?;
        let event = Event {
            kind,
            payment_session_id: session.psid.clone(),
            order_id: session.order_id.clone(),
            amount: session.amount,
            currency: session.currency.clone(),
            created_at: rfc3339_ms(now_ms()),
            idempotency_key: format!("evt_{}", &new_psid()[3..]),
        };
        let (body, signature) = event.encode_signed(self.webhook_secret.as_bytes());
        let ok = self.payment_event(&body, Some(&signature)).await?;
        Ok((session, ok))
    }
}
