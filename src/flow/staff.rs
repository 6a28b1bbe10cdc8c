//! Staff accounts (created and removed by the admin) and the activity log every staff action
//! writes to.

use super::app::{store_read, App, FlowError};
use crate::clock::now_ms;
use crate::staff::{self, ActivityEntry, Role, StaffMember, StaffRecord};
use crate::store::{StaffChanged, StaffOp};

impl App {
    /// Appends to the activity log. The action itself has happened and stands: a failed log
    /// write is logged loudly, not answered as the action's failure.
    pub async fn log_activity(&self, by: &StaffMember, action: &str, detail: String) {
        let entry = ActivityEntry { at_ms: now_ms(), staff: by.name.clone(), action: action.to_string(), detail };
        if let Err(e) = self.store.log_activity(entry.clone()).await {
            tracing::error!(error = %e, ?entry, "writing the activity log");
        }
    }

    pub async fn create_staff(
        &self,
        by: &StaffMember,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<StaffRecord, FlowError> {
        staff::check_new_account(name, password, &self.config.admin_user).map_err(FlowError::BadRequest)?;
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || staff::hash_password(&password))
            .await
            .map_err(|e| FlowError::Unavailable(format!("hashing the password: {e}")))?
            .map_err(|e| FlowError::Unavailable(format!("{e:#}")))?;
        let record = StaffRecord {
            name: name.to_string(),
            role,
            number: 0,
            password_hash: hash,
            created_at_ms: now_ms(),
            removed_at_ms: None,
            sessions_since_ms: 0,
        };
        let created = match self.store.change_staff(StaffOp::Create(record)).await? {
            StaffChanged::Done(record) => record,
            StaffChanged::NameTaken => return Err(FlowError::Conflict(format!("a staff account {name:?} exists"))),
            StaffChanged::Full => return Err(FlowError::Conflict("too many staff accounts".into())),
            StaffChanged::NotFound => unreachable!("creating finds no account"),
        };
        self.log_activity(by, "staff_created", format!("{} ({})", created.name, created.role.as_str())).await;
        Ok(created)
    }

    pub async fn remove_staff(&self, by: &StaffMember, name: &str) -> Result<(), FlowError> {
        match self.store.change_staff(StaffOp::Remove { name: name.to_string(), at_ms: now_ms() }).await? {
            StaffChanged::Done(_) => {}
            _ => return Err(FlowError::NotFound(format!("no staff account {name:?}"))),
        }
        self.log_activity(by, "staff_removed", name.to_string()).await;
        Ok(())
    }

    /// Who a valid session belongs to: the configured admin, or a staff account that exists,
    /// is not removed, and has not logged out since the session began.
    pub fn staff_member(&self, session: String, number: u32) -> Result<Option<StaffMember>, FlowError> {
        if number == staff::ADMIN_NUMBER {
            let name = self.config.admin_user.clone();
            return Ok(Some(StaffMember { name, number, role: Role::Admin, session }));
        }
        let issued_at_ms = crate::admin::session_issued_at_ms(&session);
        let Some(name) = store_read(self.store.staff_name(number))? else { return Ok(None) };
        let Some(record) = store_read(self.store.staff(&name))? else { return Ok(None) };
        let live =
            record.number == number && record.removed_at_ms.is_none() && issued_at_ms >= record.sessions_since_ms;
        Ok(live.then_some(StaffMember { name: record.name, number, role: record.role, session }))
    }
}
