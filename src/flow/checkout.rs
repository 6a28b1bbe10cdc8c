//! Checkout: a ticket hold and a goodie hold in TigerBeetle, then the payment session and its
//! PENDING order in the store. The holds come first: a crash between the two leaves holds
//! nobody knows of, and they expire by themselves.

use std::time::Instant;

use super::app::{App, FlowError};
use crate::accounting::{self, Resource, TransferResult};
use crate::api::is_valid_email;
use crate::clock::now_ms;
use crate::config::TicketClass;
use crate::ids::{format_order_id, new_id, new_psid};
use crate::metrics::stage;
use crate::order::{Order, Sale, Session};

pub struct CheckoutOk {
    pub order_id: String,
    pub psid: String,
    pub amount: u64,
    pub currency: String,
}

/// The ids of a checkout's two holds and of the order they are for.
struct Holds {
    order_num: u128,
    ticket: u128,
    goodie: u128,
}

/// Transfers of one checkout, placed in one TigerBeetle batch with everyone else's.
const CHECKOUT_TRANSFERS: usize = 2;
const _: () = assert!(CHECKOUT_TRANSFERS <= accounting::BATCH_TRANSFERS_MAX);

impl App {
    /// Places a ticket hold and a goodie hold, then records the session and its PENDING order.
    pub async fn checkout(&self, cls: &str, email: &str) -> Result<CheckoutOk, FlowError> {
        if !self.config.mockpay {
            return Err(FlowError::Forbidden("online sales are closed; tickets are sold at the box office".into()));
        }
        let class =
            self.config.class(cls).ok_or_else(|| FlowError::BadRequest(format!("unknown ticket class {cls:?}")))?;
        if !is_valid_email(email) {
            return Err(FlowError::BadRequest("invalid customer_email".into()));
        }
        let (session, _) = self.open_order(class, email, None).await?;
        self.metrics.checkouts.add(1);
        let Session { order_id, psid, amount, currency, .. } = session;
        Ok(CheckoutOk { order_id, psid, amount, currency })
    }

    /// The holds, then the session and its PENDING order (an online checkout, or the first half
    /// of a box-office sale, `sale`).
    pub(super) async fn open_order(
        &self,
        class: &TicketClass,
        email: &str,
        sale: Option<Sale>,
    ) -> Result<(Session, Order), FlowError> {
        let mut clock = Instant::now();
        let holds = Holds { order_num: new_id(), ticket: new_id(), goodie: new_id() };
        self.metrics.stage(stage::CHECKOUT_VALIDATE, &mut clock);
        let goodie_held = self.place_holds(class, &holds).await?;
        self.metrics.stage(stage::CHECKOUT_TIGERBEETLE, &mut clock);

        let created_at_ms = now_ms();
        let session = Session {
            psid: new_psid(),
            order_id: format_order_id(holds.order_num),
            cls: class.id.clone(),
            email: email.to_string(),
            amount: class.price_cents,
            currency: self.config.currency.clone(),
            ticket_hold_id: holds.ticket,
            goodie_hold_id: goodie_held.then_some(holds.goodie),
            created_at_ms,
            expires_at_ms: created_at_ms + u64::from(self.config.hold_timeout_s) * 1000,
        };
        let order = Order { sale, ..Order::pending(&session) };
        self.store.checkout(&session, &order).await?;
        self.metrics.stage(stage::CHECKOUT_STORE, &mut clock);
        Ok((session, order))
    }

    /// Both holds in one submission. Ok(whether the goodie was held) once the ticket is held;
    /// a sold-out class gives its goodie hold back at once.
    async fn place_holds(&self, class: &TicketClass, holds: &Holds) -> Result<bool, FlowError> {
        let (ledger, timeout_s) = (self.config.ledger, self.config.hold_timeout_s);
        let transfers = vec![
            accounting::hold(ledger, Resource::class(&class.id), holds.ticket, holds.order_num, timeout_s),
            accounting::hold(ledger, Resource::GOODIES, holds.goodie, holds.order_num, timeout_s),
        ];
        assert_eq!(transfers.len(), CHECKOUT_TRANSFERS);
        let results = self.transfers(transfers).await?;
        let goodie_held = results[1].is_success();
        match results[0] {
            r if r.is_success() => {}
            TransferResult::ExceedsCredits => {
                self.metrics.sold_out.add(1);
                if goodie_held {
                    // Give the goodie back now rather than at the hold's timeout. If this fails the
                    // hold still expires on its own, so the sold-out answer stands either way.
                    if let Err(e) = self.transfers(vec![accounting::void(holds.goodie)]).await {
                        tracing::warn!(error = ?e, "voiding the goodie hold of a sold-out checkout");
                    }
                }
                return Err(FlowError::SoldOut { cls: class.id.clone() });
            }
            other => {
                tracing::error!(?other, "ticket hold refused");
                return Err(FlowError::Unavailable(format!("ticket hold refused by TigerBeetle: {other:?}")));
            }
        }
        if !goodie_held && results[1] != TransferResult::ExceedsCredits {
            tracing::warn!(result = ?results[1], "goodie hold refused");
        }
        Ok(goodie_held)
    }
}
