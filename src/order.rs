//! The domain model: a payment session, its order, the order's statuses, and what a payment
//! event does to an order. Pure data and rules; the store keeps these records as JSON (field
//! names and order are the on-disk format: never rename one).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    PaidUnfulfilled,
    Failed,
    Canceled,
    Expired,
    /// Paid, then refunded by the admin: its unit (if it had one) is back on sale.
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::PaidUnfulfilled,
        OrderStatus::Failed,
        OrderStatus::Canceled,
        OrderStatus::Expired,
        OrderStatus::Refunded,
    ];

    /// The position in `ALL`: an index for per-status counters.
    pub fn index(self) -> usize {
        OrderStatus::ALL.iter().position(|s| *s == self).expect("listed")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::PaidUnfulfilled => "PAID_UNFULFILLED",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.iter().copied().find(|status| status.as_str() == s)
    }

    /// Any payment outcome may still change an order in these states: an expired hold can be
    /// booked late.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Expired)
    }

    /// Whether an order in this state takes this payment outcome: any while it is open; after
    /// a failure or a cancel, only a success (the provider took the money after all: the ticket
    /// is booked if one is left, else the order is paid without one, to refund); nothing once
    /// it is paid.
    pub fn accepts(self, outcome: OrderStatus) -> bool {
        match self {
            OrderStatus::Pending | OrderStatus::Expired => true,
            OrderStatus::Failed | OrderStatus::Canceled => outcome.is_paid(),
            OrderStatus::Paid | OrderStatus::PaidUnfulfilled | OrderStatus::Refunded => false,
        }
    }

    /// Money was taken: with a ticket, or without one (to refund).
    pub fn is_paid(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PaidUnfulfilled)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub psid: String,
    pub order_id: String,
    pub cls: String,
    pub email: String,
    pub amount: u64,
    pub currency: String,
    pub ticket_hold_id: u128,
    /// `None` when the goodie pool refused the hold at checkout.
    pub goodie_hold_id: Option<u128>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub psid: String,
    pub status: OrderStatus,
    pub cls: String,
    pub qty: u32,
    pub amount: u64,
    pub currency: String,
    pub email: String,
    pub created_at_ms: u64,
    pub paid_at_ms: Option<u64>,
    pub ticket_code: Option<String>,
    pub got_goodie: bool,
    /// Idempotency keys of the payment events recorded for this order, oldest first, at most
    /// `ORDER_EVENT_KEYS_MAX`. Kept in the order rather than in a table of their own: a webhook
    /// then rewrites one record (the keys are random, so a table of them scattered every group
    /// commit over the whole B-tree), and a storm for one order cannot grow the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_keys: Vec<String>,
    /// The holds a payment moves, copied from the session, so that a payment event reads one
    /// record instead of two (each a random B-tree lookup, most of a webhook's CPU in the server
    /// when the open orders outgrow the cache), and so that a session can be deleted once its
    /// order is long final (`store` retention).
    pub ticket_hold_id: u128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodie_hold_id: Option<u128>,
    /// A box-office sale: how it was paid and who sold it (`None` for online orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<Sale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
}

/// How a box-office sale was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    Cash,
    Card,
}

impl PaymentMethod {
    pub fn parse(s: &str) -> Option<PaymentMethod> {
        match s {
            "cash" => Some(PaymentMethod::Cash),
            "card" => Some(PaymentMethod::Card),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Card => "card",
        }
    }
}

/// A box-office sale's marks on its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub method: PaymentMethod,
    pub staff: String,
}

/// Who refunded an order, when and why; `forced`: its ticket had been admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub at_ms: u64,
    pub by: String,
    pub reason: String,
    pub forced: bool,
}

/// A ticket let in at the door, as the store records it (the ledger's admission decides; this
/// record is what the admin view and the exports read, and what tells a retried scan from a
/// second one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub order_id: String,
    pub cls: String,
    pub admitted_at_ms: u64,
    pub door: String,
    pub staff: String,
}

/// Event ids an order remembers. Beyond this the oldest is forgotten: a very late replay of it
/// finds the order final and changes nothing anyway (answered with the order's status).
pub const ORDER_EVENT_KEYS_MAX: usize = 16;

/// What a payment event does to an order.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: OrderStatus,
    pub paid_at_ms: Option<u64>,
    pub ticket_code: Option<String>,
    pub got_goodie: bool,
}

impl Outcome {
    /// An outcome that leaves no ticket (failed, canceled).
    pub fn without_ticket(status: OrderStatus) -> Outcome {
        Outcome { status, paid_at_ms: None, ticket_code: None, got_goodie: false }
    }
}

/// An order rewritten by its webhook handler, off the store's writer thread.
#[derive(Debug, Clone)]
pub struct PreparedOrder {
    /// The order's record as the handler read it.
    pub expected: Vec<u8>,
    /// The record after the event.
    pub updated: Vec<u8>,
    /// (before, after) when the status changed.
    pub changed: Option<(OrderStatus, OrderStatus)>,
    pub status: OrderStatus,
}

impl Order {
    /// The PENDING order a checkout's session stands for: one ticket of the session's class.
    pub fn pending(session: &Session) -> Order {
        Order {
            order_id: session.order_id.clone(),
            psid: session.psid.clone(),
            status: OrderStatus::Pending,
            cls: session.cls.clone(),
            qty: 1,
            amount: session.amount,
            currency: session.currency.clone(),
            email: session.email.clone(),
            created_at_ms: session.created_at_ms,
            paid_at_ms: None,
            ticket_code: None,
            got_goodie: false,
            event_keys: Vec::new(),
            ticket_hold_id: session.ticket_hold_id,
            goodie_hold_id: session.goodie_hold_id,
            sale: None,
            refund: None,
        }
    }

    /// Applies a payment event: its outcome if the order is still open, and its id to the
    /// remembered ones. Returns (before, after) if the status changed.
    pub fn apply_payment(&mut self, event_key: &str, outcome: Option<&Outcome>) -> Option<(OrderStatus, OrderStatus)> {
        assert!(!self.event_keys.iter().any(|k| k == event_key), "replays are answered before");
        let mut changed = None;
        if let Some(outcome) = outcome.filter(|o| self.status.accepts(o.status)) {
            changed = Some((self.status, outcome.status));
            self.status = outcome.status;
            self.paid_at_ms = outcome.paid_at_ms;
            self.ticket_code = outcome.ticket_code.clone();
            self.got_goodie = outcome.got_goodie;
        }
        let excess = (self.event_keys.len() + 1).saturating_sub(ORDER_EVENT_KEYS_MAX);
        self.event_keys.drain(..excess);
        self.event_keys.push(event_key.to_string());
        assert!(self.event_keys.len() <= ORDER_EVENT_KEYS_MAX);
        changed
    }

    /// The handler's side of a payment write: the order as read (`record`), rewritten.
    pub fn prepare_payment(&self, record: Vec<u8>, event_key: &str, outcome: Option<&Outcome>) -> PreparedOrder {
        let mut updated = self.clone();
        let changed = updated.apply_payment(event_key, outcome);
        PreparedOrder {
            expected: record,
            updated: serde_json::to_vec(&updated).expect("orders encode"),
            changed,
            status: updated.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_the_record_format_stays() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{}\"", status.as_str()));
            assert_eq!(OrderStatus::ALL[status.index()], status);
        }
        assert_eq!(OrderStatus::parse("paid"), None);
        use OrderStatus::*;
        assert!(Pending.accepts(Failed) && Expired.accepts(Paid));
        assert!(Failed.accepts(Paid) && Canceled.accepts(PaidUnfulfilled) && !Failed.accepts(Canceled));
        assert!(!Paid.accepts(Failed) && !PaidUnfulfilled.accepts(Paid));
        assert!(!Refunded.accepts(Paid) && !Refunded.is_open() && !Refunded.is_paid());
        let session = Session {
            psid: "ps_1".into(),
            order_id: "o1".into(),
            cls: "A".into(),
            email: "a@b.co".into(),
            amount: 6500,
            currency: "EUR".into(),
            ticket_hold_id: 7,
            goodie_hold_id: None,
            created_at_ms: 5,
            expires_at_ms: 300_005,
        };
        // The on-disk record of a new order, byte for byte.
        assert_eq!(
            serde_json::to_string(&Order::pending(&session)).unwrap(),
            r#"{"order_id":"o1","psid":"ps_1","status":"PENDING","cls":"A","qty":1,"amount":6500,"currency":"EUR","email":"a@b.co","created_at_ms":5,"paid_at_ms":null,"ticket_code":null,"got_goodie":false,"ticket_hold_id":7}"#
        );
    }
}
