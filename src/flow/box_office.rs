//! A box-office sale: the same holds and PENDING order as an online checkout, then at once the
//! same post and PAID record as a payment, under the order's payment lock. The money is in the
//! till, so there is no provider to wait for. A crash between the steps leaves what a crash
//! leaves online: a hold that expires, or an order the audit shows as ledger-ahead; the staff
//! member saw no ticket, and sells again.

use super::app::{store_read, App, FlowError};
use crate::api::is_valid_email;
use crate::order::{Order, OrderStatus, Outcome, PaymentMethod, Sale};
use crate::staff::StaffMember;
use crate::store::PaymentRecorded;

/// Attempts at recording a sale whose unit the ledger has sold. No provider retries a box-office
/// sale as one retries a webhook, so the server does, with the same event id (idempotent).
pub const SALE_RECORD_ATTEMPTS: u32 = 3;
pub const SALE_RECORD_RETRY_MS: u64 = 200;

impl App {
    /// The PAID record of a sale the ledger has posted, retried a few times; if it still fails,
    /// the answer says the outcome is unknown (the audit shows the order as ledger-ahead).
    async fn record_sale(&self, order: &Order, outcome: Outcome) -> Result<PaymentRecorded, FlowError> {
        let event_key = format!("box_{}", order.order_id);
        let mut attempt = 1;
        loop {
            match self.store.record_payment(&order.order_id, &event_key, Some(outcome.clone()), None).await {
                Ok(recorded) => return Ok(recorded),
                Err(e) if attempt < SALE_RECORD_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, order_id = %order.order_id, "recording a box-office sale; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, order_id = %order.order_id, "a box-office sale's unit is sold, its record is not");
                    return Err(FlowError::Unavailable(format!(
                        "the ticket is sold in the ledger but the sale is not recorded ({e}): look for order {} \
                         in the admin view before selling again",
                        order.order_id
                    )));
                }
            }
            attempt += 1;
            tokio::time::sleep(std::time::Duration::from_millis(SALE_RECORD_RETRY_MS)).await;
        }
    }

    pub async fn box_office_sale(
        &self,
        cls: &str,
        method: PaymentMethod,
        email: Option<&str>,
        staff: &StaffMember,
    ) -> Result<Order, FlowError> {
        let class =
            self.config.class(cls).ok_or_else(|| FlowError::BadRequest(format!("unknown ticket class {cls:?}")))?;
        let email = email.unwrap_or("");
        if !email.is_empty() && !is_valid_email(email) {
            return Err(FlowError::BadRequest("invalid customer_email".into()));
        }
        let sale = Sale { method, staff: staff.name.clone() };
        let (session, order) = self.open_order(class, email, Some(sale)).await?;
        let _order_lock = self.payment_locks.stripe(&session.psid).lock().await;
        let outcome = self
            .settle_paid(&order, App::holds_of(&order))
            .await?
            .ok_or_else(|| FlowError::Unavailable("the sale's hold was voided meanwhile".into()))?;
        match self.record_sale(&order, outcome).await? {
            PaymentRecorded::Order(OrderStatus::Paid) | PaymentRecorded::Replay => {}
            other => {
                tracing::error!(?other, order_id = %order.order_id, "a box-office sale did not end PAID");
                return Err(FlowError::Unavailable(format!("the sale was not recorded as paid: {other:?}")));
            }
        }
        let sold = store_read(self.store.order(&order.order_id))?.expect("recorded just now");
        if sold.status != OrderStatus::Paid {
            return Err(FlowError::Unavailable(format!("the sale ended {}", sold.status.as_str())));
        }
        let detail = format!("order {} class {} {} {}", sold.order_id, sold.cls, method.as_str(), sold.amount);
        self.log_activity(staff, "sale", detail).await;
        Ok(sold)
    }
}
