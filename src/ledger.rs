//! The TigerBeetle connection: the one IO edge of the accounting model.
//!
//! Transfers go through the batcher (this type is its backend); lookups go straight to the
//! client, which coalesces concurrent requests itself. The client never times out a request: it
//! retries until the cluster answers. Callers bound their wait (`Ledger::timeout`) and answer 503,
//! which is safe because every id we submit is idempotent.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tb::error::{CreateAccountErrorKind, CreateAccountsError, CreateTransfersError};
use tb::{Account, Transfer};
use tigerbeetle_unofficial as tb;

use crate::accounting::{self, AccountKind, Inventory, Resource, TransferResult};
use crate::batcher::Backend;
use crate::config::Config;

pub struct Ledger {
    client: tb::Client,
    pub cluster_id: u128,
    pub addresses: String,
}

impl Ledger {
    pub fn connect(cluster_id: u128, addresses: &str) -> anyhow::Result<Ledger> {
        let client =
            tb::Client::new(cluster_id, addresses).map_err(|e| anyhow!("TigerBeetle client for {addresses}: {e}"))?;
        Ok(Ledger { client, cluster_id, addresses: addresses.to_string() })
    }

    /// Creates the accounts of every resource and funds each Budget up to its capacity.
    /// Idempotent: `exists` is success, and funding ids depend on the funded amounts.
    pub async fn ensure_event(&self, config: &Config) -> anyhow::Result<()> {
        let ledger = config.ledger;
        let resources = accounting::event_resources(config);

        let accounts: Vec<Account> =
            resources.iter().flat_map(|r| accounting::resource_accounts(ledger, r.resource)).collect();
        match self.client.create_accounts(accounts).await {
            Ok(()) => {}
            Err(CreateAccountsError::Api(errors)) => {
                for e in errors.as_slice() {
                    // Exists (with the same fields): an idempotent success.
                    if !matches!(e.inner().kind(), CreateAccountErrorKind::Exists) {
                        bail!("creating accounts: {e}");
                    }
                }
            }
            Err(e) => bail!("creating accounts: {e}"),
        }

        let budget_ids: Vec<u128> =
            resources.iter().map(|r| accounting::account_id(ledger, r.resource, AccountKind::Budget)).collect();
        let budgets = self.client.lookup_accounts(budget_ids.clone()).await.context("looking up budgets")?;
        let mut funding = Vec::new();
        for (r, id) in resources.iter().zip(&budget_ids) {
            let (name, capacity) = (&r.name, r.capacity);
            let budget = budgets
                .iter()
                .find(|a| a.id() == *id)
                .ok_or_else(|| anyhow!("budget account of {name} missing after creation"))?;
            let funded = budget.credits_posted();
            if funded > u128::from(capacity) {
                tracing::warn!(%name, funded, capacity, "capacity lowered in config: not applied (units may be sold)");
            }
            if let Some(t) = accounting::funding_transfer(ledger, r.resource, funded, capacity) {
                tracing::info!(%name, from = funded, to = capacity, "funding budget");
                funding.push(t);
            }
        }
        if !funding.is_empty() {
            let failures = self.create_transfers(funding).await.map_err(|e| anyhow!("funding: {e}"))?;
            for (index, result) in failures {
                if !result.is_success() {
                    bail!("funding transfer {index} refused by TigerBeetle: {result:?}");
                }
            }
        }
        Ok(())
    }

    /// Inventory of each class (in config order) and of the goodie pool, from balances.
    pub async fn inventory(&self, config: &Config) -> anyhow::Result<(Vec<Inventory>, Inventory)> {
        let ledger = config.ledger;
        let resources: Vec<Resource> = accounting::event_resources(config).into_iter().map(|r| r.resource).collect();
        let ids: Vec<u128> = resources
            .iter()
            .flat_map(|r| {
                [
                    accounting::account_id(ledger, *r, AccountKind::Budget),
                    accounting::account_id(ledger, *r, AccountKind::Spent),
                ]
            })
            .collect();
        let accounts = self.client.lookup_accounts(ids.clone()).await.map_err(|e| anyhow!("{e}"))?;
        let find = |id: u128| accounts.iter().find(|a| a.id() == id).ok_or_else(|| anyhow!("account {id} not found"));
        let mut out = Vec::with_capacity(resources.len());
        for pair in ids.chunks(2) {
            out.push(accounting::inventory(find(pair[0])?, find(pair[1])?));
        }
        let goodies = out.pop().expect("goodies are the last resource");
        Ok((out, goodies))
    }

    pub async fn lookup_transfers(&self, ids: Vec<u128>) -> anyhow::Result<Vec<Transfer>> {
        self.client.lookup_transfers(ids).await.map_err(|e| anyhow!("{e}"))
    }

    pub async fn lookup_accounts(&self, ids: Vec<u128>) -> anyhow::Result<Vec<Account>> {
        self.client.lookup_accounts(ids).await.map_err(|e| anyhow!("{e}"))
    }

    pub async fn get_account_transfers(&self, filter: tb::account::Filter) -> anyhow::Result<Vec<Transfer>> {
        self.client.get_account_transfers(Box::new(filter)).await.map_err(|e| anyhow!("{e}"))
    }

    /// A cheap round trip that proves the cluster answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.client.lookup_accounts(vec![1u128]).await.map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

/// Waits up to `timeout` for a future that talks to TigerBeetle.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(result) => result,
        Err(_) => bail!("TigerBeetle did not answer {what} within {} ms", timeout.as_millis()),
    }
}

impl Backend for Ledger {
    async fn create_transfers(&self, batch: Vec<Transfer>) -> Result<Vec<(u32, TransferResult)>, String> {
        match self.client.create_transfers(batch).await {
            Ok(()) => Ok(Vec::new()),
            Err(CreateTransfersError::Api(errors)) => Ok(errors
                .as_slice()
                .iter()
                .map(|e| (e.index(), TransferResult::from_error(e.inner().kind(), e.inner().code().get())))
                .collect()),
            Err(CreateTransfersError::Send(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
