//! The driver of one uplink session: it checks the certificate's standing, waits for Hello,
//! registers the worker, sends Welcome and the first snapshot, then serves heartbeats and
//! event batches and pushes changes, doing the store calls and writes that
//! [`Session`] decides.
//!
//! Revocation is checked when the session starts, on every heartbeat, and whenever the
//! `revoke_rev` counter moves (within a poll interval of `ims-control worker revoke`, on any
//! replica): a revoked worker gets `ErrorReply{Unauthorized}` and the connection closes.
//! A store failure while recording events closes the connection with `Unavailable` (nothing
//! was acknowledged, so the edge resends after reconnecting).

use std::sync::Arc;
use std::time::Duration;

use ims_proto::{ControlMessage, ErrorCode, ErrorReply, EventsAck, MAX_EDGE_FRAME, Snapshot};
use quinn::{Connection, SendStream};

use crate::db::{StoreError, now_ms};
use crate::store::workers::{self, Registration, WorkerError};
use crate::uplink::events::{self, EventsError};
use crate::uplink::identity::PeerIdentity;
use crate::uplink::registry::{self, Standing};
use crate::uplink::server::Shared;
use crate::uplink::session::{Action, Session};
use crate::uplink::wire::{self, CLOSE_DONE, Inbound, reply};

/// How soon a snapshot that could not be built is tried again.
pub(crate) const SYNC_RETRY: Duration = Duration::from_secs(1);
/// How long the edge is asked to wait after a store failure.
pub(crate) const RETRY_AFTER_MS: u64 = 5_000;

/// How a session ended.
enum End {
    /// The edge closed its stream or the connection.
    Edge(String),
    /// The control plane refused or ended it with this reply.
    Refused(ErrorReply),
    /// The connection failed.
    Lost(String),
}

/// Serves one uplink connection whose client certificate named `id`.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Connection, id: PeerIdentity) {
    let remote = conn.remote_address();
    let worker = id.worker_id.clone();
    let accepted = tokio::time::timeout(wire::FIRST_MESSAGE_TIMEOUT, conn.accept_bi()).await;
    let Ok(Ok((mut send, recv))) = accepted else {
        tracing::info!(%remote, worker, "uplink connection opened no stream; closed");
        conn.close(wire::CLOSE_PROTOCOL.into(), b"no stream opened");
        return;
    };
    let inbound = wire::spawn_reader(recv, MAX_EDGE_FRAME);
    let interval_ms =
        u64::try_from(shared.settings.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
    let mut driver = Driver {
        shared,
        conn: conn.clone(),
        session: Session::new(&id.worker_id, &id.site, interval_ms),
        id,
        site_id: 0,
        config_rev: 0,
        revoke_rev: 0,
        sync_pending: false,
    };
    let end = driver.run(&mut send, inbound).await;
    match end {
        End::Edge(why) => {
            tracing::info!(%remote, worker, "uplink session ended by the edge: {why}");
            conn.close(CLOSE_DONE.into(), b"bye");
        }
        End::Lost(why) => {
            tracing::info!(%remote, worker, "uplink connection lost: {why}");
            // The reader task still holds the stream: close the connection so it ends too.
            conn.close(wire::CLOSE_PROTOCOL.into(), b"connection lost");
        }
        End::Refused(error) => {
            tracing::info!(
                %remote,
                worker,
                code = %error.code,
                "uplink session closed: {}",
                error.message
            );
            let code = wire::close_code(error.code);
            let reason = error.message.clone();
            let msg = ControlMessage::Error(error);
            wire::finish(&conn, &mut send, Some(&msg), code, &reason).await;
        }
    }
}

struct Driver {
    shared: Arc<Shared>,
    conn: Connection,
    session: Session,
    id: PeerIdentity,
    site_id: i64,
    config_rev: u64,
    revoke_rev: u64,
    sync_pending: bool,
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> ErrorReply {
    tracing::warn!("{what}: {e}");
    ErrorReply {
        code: ErrorCode::Unavailable,
        message: format!("the control plane could not {what}; reconnect later"),
        retry_after_ms: Some(RETRY_AFTER_MS),
    }
}

impl Driver {
    async fn run(
        &mut self,
        send: &mut SendStream,
        mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    ) -> End {
        if let Err(end) = self.admit().await {
            return end;
        }
        let first = tokio::time::timeout(wire::FIRST_MESSAGE_TIMEOUT, inbound.recv()).await;
        let hello = match first {
            Ok(Some(Inbound::Message(msg))) => msg,
            Ok(Some(Inbound::Ended) | None) => return End::Edge("closed before Hello".into()),
            Ok(Some(Inbound::Lost(e))) => return End::Lost(e),
            Ok(Some(Inbound::Malformed(e) | Inbound::Failed(e))) => {
                return End::Refused(reply(ErrorCode::BadMessage, e));
            }
            Err(_) => {
                return End::Refused(reply(
                    ErrorCode::BadMessage,
                    "no Hello arrived within 10 s of opening the stream",
                ));
            }
        };
        let welcome = match self.session.on_message(hello, now_ms()) {
            Action::Start(welcome) => welcome,
            Action::Close(error) => return End::Refused(error),
            _ => {
                return End::Refused(reply(
                    ErrorCode::BadMessage,
                    "the first message must be Hello",
                ));
            }
        };
        if let Err(end) = self.register().await {
            return end;
        }
        if let Some(note) = self.session.identity_mismatch() {
            tracing::warn!(worker = self.id.worker_id, "{note}");
        }
        if let Err(e) = wire::send(send, &ControlMessage::Welcome(*welcome)).await {
            return End::Lost(e.to_string());
        }
        let mut revs = self.shared.revs.clone();
        let current = *revs.borrow_and_update();
        self.config_rev = current.config;
        self.revoke_rev = current.revoke;
        if let Err(end) = self.sync(send).await {
            return end;
        }
        loop {
            tokio::select! {
                item = inbound.recv() => {
                    let msg = match item {
                        Some(Inbound::Message(msg)) => msg,
                        Some(Inbound::Malformed(e)) => {
                            let error = ControlMessage::Error(reply(ErrorCode::BadMessage, e));
                            if let Err(e) = wire::send(send, &error).await {
                                return End::Lost(e.to_string());
                            }
                            continue;
                        }
                        Some(Inbound::Failed(e)) => {
                            return End::Refused(reply(ErrorCode::BadMessage, e));
                        }
                        Some(Inbound::Lost(e)) => return End::Lost(e),
                        Some(Inbound::Ended) | None => {
                            return End::Edge(self.close_reason());
                        }
                    };
                    if let Err(end) = self.handle(send, msg).await {
                        return end;
                    }
                }
                changed = revs.changed() => {
                    if changed.is_err() {
                        return End::Refused(ErrorReply {
                            code: ErrorCode::Unavailable,
                            message: "the control plane is shutting down; reconnect".into(),
                            retry_after_ms: Some(1_000),
                        });
                    }
                    let now = *revs.borrow_and_update();
                    if now.revoke != self.revoke_rev {
                        self.revoke_rev = now.revoke;
                        if let Err(end) = self.admit().await {
                            return end;
                        }
                    }
                    if now.config != self.config_rev {
                        self.config_rev = now.config;
                        if let Err(end) = self.sync(send).await {
                            return end;
                        }
                    }
                }
                () = tokio::time::sleep(SYNC_RETRY), if self.sync_pending => {
                    if let Err(end) = self.sync(send).await {
                        return end;
                    }
                }
            }
        }
    }

    fn close_reason(&self) -> String {
        self.conn
            .close_reason()
            .map_or_else(|| "stream finished".to_owned(), |e| e.to_string())
    }

    /// Checks the certificate's standing and the worker's site.
    async fn admit(&mut self) -> Result<(), End> {
        let standing = registry::standing(&self.shared.app.db, &self.id)
            .await
            .map_err(|e| End::Refused(unavailable("check the certificate", &e)))?;
        if let Some(why) = standing.refusal(&self.id.worker_id) {
            return Err(End::Refused(reply(ErrorCode::Unauthorized, why)));
        }
        let Standing::Good { site_id } = standing else {
            return Err(End::Refused(reply(ErrorCode::Unauthorized, "not accepted")));
        };
        let Some(site_id) = site_id else {
            return Err(End::Refused(reply(
                ErrorCode::Unauthorized,
                format!(
                    "the site of worker `{}` was deleted; enrol the edge again with a join \
                     token for an existing site",
                    self.id.worker_id
                ),
            )));
        };
        self.site_id = site_id;
        Ok(())
    }

    /// Registers the worker (heard from now, its address and version).
    async fn register(&self) -> Result<(), End> {
        let version = self.session.hello().map(|h| h.software_version.clone());
        let reg = Registration {
            worker_id: self.id.worker_id.clone(),
            ip_address: Some(self.conn.remote_address().ip()),
            site_id: Some(self.site_id),
            version,
            heartbeat_interval_ms: Some(
                i64::try_from(self.shared.settings.heartbeat_interval.as_millis())
                    .unwrap_or(i64::MAX),
            ),
        };
        let db = &self.shared.app.db;
        let mut tx = db
            .begin_write()
            .await
            .map_err(|e| End::Refused(unavailable("register the worker", &e)))?;
        match workers::register(&mut tx, &reg, now_ms()).await {
            Ok(_) => {}
            Err(WorkerError::Revoked(_) | WorkerError::Unregistered(_)) => {
                return Err(End::Refused(reply(
                    ErrorCode::Unauthorized,
                    Standing::Revoked
                        .refusal(&self.id.worker_id)
                        .unwrap_or_default(),
                )));
            }
            Err(WorkerError::Store(e)) => {
                return Err(End::Refused(unavailable("register the worker", &e)));
            }
        }
        tx.commit()
            .await
            .map_err(|e| End::Refused(unavailable("register the worker", &StoreError::from(e))))?;
        let hello = self.session.hello();
        tracing::info!(
            worker = self.id.worker_id,
            site = self.id.site,
            remote = %self.conn.remote_address(),
            version = hello.map_or("", |h| h.software_version.as_str()),
            hostname = hello.map_or("", |h| h.hostname.as_str()),
            "worker connected"
        );
        Ok(())
    }

    /// Sends what the session decides for the site's current state.
    async fn sync(&mut self, send: &mut SendStream) -> Result<(), End> {
        let snapshot: Arc<Snapshot> = match self
            .shared
            .snapshots
            .get(&self.shared.app.db, self.site_id, self.config_rev)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                if !self.sync_pending {
                    tracing::warn!(
                        worker = self.id.worker_id,
                        "cannot build the site snapshot ({e}); retrying"
                    );
                }
                self.sync_pending = true;
                return Ok(());
            }
        };
        self.sync_pending = false;
        if let Some(msg) = self.session.sync(&snapshot) {
            tracing::debug!(
                worker = self.id.worker_id,
                generation = snapshot.generation,
                kind = msg.kind(),
                "pushing the site state"
            );
            wire::send(send, &msg)
                .await
                .map_err(|e| End::Lost(e.to_string()))?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        send: &mut SendStream,
        msg: ims_proto::EdgeMessage,
    ) -> Result<(), End> {
        match self.session.on_message(msg, now_ms()) {
            Action::Heartbeat { record, ack } => {
                self.admit().await?;
                let db = &self.shared.app.db;
                let stored = async {
                    let mut tx = db.begin_write().await?;
                    workers::heartbeat(&mut tx, &self.id.worker_id, &record, now_ms()).await?;
                    tx.commit().await.map_err(StoreError::from)?;
                    Ok::<_, WorkerError>(())
                }
                .await;
                match stored {
                    Ok(()) => {}
                    Err(WorkerError::Revoked(_) | WorkerError::Unregistered(_)) => {
                        return Err(End::Refused(reply(
                            ErrorCode::Unauthorized,
                            Standing::Revoked
                                .refusal(&self.id.worker_id)
                                .unwrap_or_default(),
                        )));
                    }
                    Err(WorkerError::Store(e)) => {
                        tracing::warn!(
                            worker = self.id.worker_id,
                            "cannot record a heartbeat: {e}"
                        );
                    }
                }
                wire::send(send, &ControlMessage::HeartbeatAck(ack))
                    .await
                    .map_err(|e| End::Lost(e.to_string()))?;
            }
            Action::Events(batch) => {
                let db = &self.shared.app.db;
                let outcome = events::record_batch(
                    db,
                    &self.id.worker_id,
                    Some(self.site_id),
                    &batch,
                    now_ms(),
                )
                .await;
                match outcome {
                    Ok(o) => {
                        tracing::debug!(
                            worker = self.id.worker_id,
                            recorded = o.recorded,
                            duplicates = o.duplicates,
                            "events recorded"
                        );
                        if let Some(up_to) = o.up_to {
                            let ack = ControlMessage::EventsAck(EventsAck { up_to });
                            wire::send(send, &ack)
                                .await
                                .map_err(|e| End::Lost(e.to_string()))?;
                        }
                    }
                    Err(EventsError::Bad(why)) => {
                        let error = ControlMessage::Error(reply(ErrorCode::BadMessage, why));
                        wire::send(send, &error)
                            .await
                            .map_err(|e| End::Lost(e.to_string()))?;
                    }
                    Err(EventsError::Worker(
                        WorkerError::Revoked(_) | WorkerError::Unregistered(_),
                    )) => {
                        return Err(End::Refused(reply(
                            ErrorCode::Unauthorized,
                            Standing::Revoked
                                .refusal(&self.id.worker_id)
                                .unwrap_or_default(),
                        )));
                    }
                    Err(EventsError::Worker(WorkerError::Store(e)) | EventsError::Store(e)) => {
                        return Err(End::Refused(unavailable("record the events", &e)));
                    }
                }
            }
            Action::Resync => {
                self.sync(send).await?;
            }
            Action::Nothing(note) => {
                if let Some(note) = note {
                    tracing::info!(worker = self.id.worker_id, "{note}");
                }
            }
            Action::Close(error) => return Err(End::Refused(error)),
            Action::Start(_) => {
                return Err(End::Refused(reply(ErrorCode::BadMessage, "a second Hello")));
            }
        }
        Ok(())
    }
}
