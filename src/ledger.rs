//! The TigerBeetle connection: the one IO edge of the accounting model.
//!
//! Transfers go through the batcher (this type is its backend); lookups go straight to the
//! client, which coalesces concurrent requests itself. The client never times out a request: it
//! retries until the cluster answers. Callers bound their wait (`Ledger::timeout`) and answer 503,
//! which is safe because every id we submit is idempotent.
//!
//! A replica keeps a bounded number of client sessions and evicts the least recently used when
//! a new client registers (other processes on the same cluster, a burst of audits, a restart):
//! an evicted client answers every later request with "evicted", for good. So a request that
//! finds its client evicted opens a new one in its place; that request answers 503, the next
//! ones go to the new client. Nothing is replayed twice: every id is derived, so a caller's
//! retry of the same transfers is `exists`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tb::error::{CreateAccountErrorKind, CreateAccountsError, CreateTransfersError, SendError, SendErrorKind};
use tb::{Account, Transfer};
use tigerbeetle_unofficial as tb;

use crate::accounting::{self, AccountKind, Inventory, Resource, TransferResult};
use crate::batcher::Backend;
use crate::config::Config;

pub struct Ledger {
    /// The client requests go to; replaced after an eviction.
    client: RwLock<Arc<tb::Client>>,
    pub cluster_id: u128,
    pub addresses: String,
    /// Clients opened in place of an evicted one.
    reconnects: AtomicU64,
}

/// Whether a request failed because the replica evicted the client's session.
trait Evicted {
    fn evicted(&self) -> bool;
}

impl Evicted for SendError {
    fn evicted(&self) -> bool {
        matches!(self.kind(), SendErrorKind::ClientEvicted)
    }
}

impl Evicted for CreateTransfersError {
    fn evicted(&self) -> bool {
        matches!(self, CreateTransfersError::Send(e) if e.evicted())
    }
}

impl Evicted for CreateAccountsError {
    fn evicted(&self) -> bool {
        matches!(self, CreateAccountsError::Send(e) if e.evicted())
    }
}

impl Ledger {
    pub fn connect(cluster_id: u128, addresses: &str) -> anyhow::Result<Ledger> {
        let client = Ledger::new_client(cluster_id, addresses)?;
        Ok(Ledger {
            client: RwLock::new(Arc::new(client)),
            cluster_id,
            addresses: addresses.to_string(),
            reconnects: AtomicU64::new(0),
        })
    }

    fn new_client(cluster_id: u128, addresses: &str) -> anyhow::Result<tb::Client> {
        tb::Client::new(cluster_id, addresses).map_err(|e| anyhow!("TigerBeetle client for {addresses}: {e}"))
    }

    /// How many times a new client replaced an evicted one.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    fn client(&self) -> Arc<tb::Client> {
        self.client.read().expect("client lock poisoned").clone()
    }

    /// Passes a request's result on; if it found `client` evicted, first puts a new client in
    /// its place (unless a concurrent request did already).
    fn checked<T, E: Evicted>(&self, client: &Arc<tb::Client>, result: Result<T, E>) -> Result<T, E> {
        if result.as_ref().is_err_and(|e| e.evicted()) {
            let mut current = self.client.write().expect("client lock poisoned");
            if Arc::ptr_eq(&current, client) {
                match Ledger::new_client(self.cluster_id, &self.addresses) {
                    Ok(fresh) => {
                        *current = Arc::new(fresh);
                        let n = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(reconnects = n, "TigerBeetle evicted this client; a new client takes over");
                    }
                    // The next request finds the old client evicted again and tries again.
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "replacing an evicted TigerBeetle client"),
                }
            }
        }
        result
    }

    /// Creates the accounts of every resource and funds each Budget up to its capacity.
    /// Idempotent: `exists` is success, and funding ids depend on the funded amounts.
    pub async fn ensure_event(&self, config: &Config) -> anyhow::Result<()> {
        let ledger = config.ledger;
        let resources = accounting::event_resources(config);

        let accounts: Vec<Account> =
            resources.iter().flat_map(|r| accounting::resource_accounts(ledger, r.resource)).collect();
        let client = self.client();
        match self.checked(&client, client.create_accounts(accounts).await) {
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

        // What was funded is what the Operator gave: Budget's credits also hold the refunds.
        let operator_ids: Vec<u128> =
            resources.iter().map(|r| accounting::account_id(ledger, r.resource, AccountKind::Operator)).collect();
        let operators = self.lookup_accounts(operator_ids.clone()).await.context("looking up operators")?;
        let mut funding = Vec::new();
        for (r, id) in resources.iter().zip(&operator_ids) {
            let (name, capacity) = (&r.name, r.capacity);
            let operator = operators
                .iter()
                .find(|a| a.id() == *id)
                .ok_or_else(|| anyhow!("operator account of {name} missing after creation"))?;
            let funded = operator.debits_posted();
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
                    accounting::account_id(ledger, *r, AccountKind::Admitted),
                ]
            })
            .collect();
        let accounts = self.lookup_accounts(ids.clone()).await?;
        let find = |id: u128| accounts.iter().find(|a| a.id() == id).ok_or_else(|| anyhow!("account {id} not found"));
        let mut out = Vec::with_capacity(resources.len());
        for three in ids.chunks(3) {
            out.push(accounting::inventory(find(three[0])?, find(three[1])?, find(three[2])?));
        }
        let goodies = out.pop().expect("goodies are the last resource");
        Ok((out, goodies))
    }

    pub async fn lookup_transfers(&self, ids: Vec<u128>) -> anyhow::Result<Vec<Transfer>> {
        let client = self.client();
        self.checked(&client, client.lookup_transfers(ids).await).map_err(|e| anyhow!("{e}"))
    }

    pub async fn lookup_accounts(&self, ids: Vec<u128>) -> anyhow::Result<Vec<Account>> {
        let client = self.client();
        self.checked(&client, client.lookup_accounts(ids).await).map_err(|e| anyhow!("{e}"))
    }

    pub async fn get_account_transfers(&self, filter: tb::account::Filter) -> anyhow::Result<Vec<Transfer>> {
        let client = self.client();
        self.checked(&client, client.get_account_transfers(Box::new(filter)).await).map_err(|e| anyhow!("{e}"))
    }

    /// A cheap round trip that proves the cluster answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.lookup_accounts(vec![1u128]).await?;
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
        let client = self.client();
        match self.checked(&client, client.create_transfers(batch).await) {
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
