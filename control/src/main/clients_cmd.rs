//! `ims-control client …`: the OAuth2 clients of the O2ims API (see
//! `ims_control::auth::clients`). `add` and `secret` print the client id and the new secret
//! once; the store keeps only an argon2 hash.

use clap::Subcommand;
use ims_control::auth::clients;
use ims_control::auth::scope::Scope;
use ims_control::db::{Db, StoreError};

use super::{Failure, hash, say, usage};

/// The `client` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCmd {
    /// Create a client; prints its id and secret once.
    Add {
        /// Client id (letters, digits and . _ -; stored in lower case).
        name: String,
        /// A scope to grant (repeatable): o2ims:read, o2ims:subscribe, o2ims:alarms
        /// [default: o2ims:read].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// What the client is for.
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
    },
    /// Give a client a new secret (printed once); the old one stops working.
    Secret {
        /// Client id.
        name: String,
    },
    /// Delete a client; its tokens stop working at once.
    Del {
        /// Client id.
        name: String,
    },
    /// List the clients.
    List,
}

/// Runs a `client` subcommand on the store.
pub(crate) async fn client_command(db: &Db, cmd: ClientCmd) -> Result<(), Failure> {
    let no_client = |name: &str| {
        anyhow::anyhow!("no client `{name}`; list the clients with `ims-control client list`")
    };
    match cmd {
        ClientCmd::Add {
            name,
            scopes,
            description,
        } => {
            let id = clients::normalize_client_id(&name)
                .map_err(|m| usage(anyhow::anyhow!("client id `{name}` {m}")))?;
            let scopes = if scopes.is_empty() {
                vec![Scope::Read]
            } else {
                clients::parse_scopes(&scopes.join(" "))
                    .map_err(|e| usage(anyhow::anyhow!("--scope: {e}")))?
            };
            if description.chars().count() > clients::DESCRIPTION_MAX {
                return Err(usage(anyhow::anyhow!(
                    "--description is longer than {} characters",
                    clients::DESCRIPTION_MAX
                )));
            }
            let secret = clients::generate_secret();
            let hash = hash(secret.clone()).await?;
            let mut tx = db.begin_write().await?;
            let client = match clients::create(&mut tx, &id, &hash, &scopes, &description).await {
                Err(StoreError::Conflict { .. }) => {
                    return Err(anyhow::anyhow!(
                        "client `{id}` already exists; give it a new secret with \
                         `ims-control client secret {id}`"
                    )
                    .into());
                }
                other => other?,
            };
            tx.commit().await.map_err(StoreError::from)?;
            say(&format!(
                "created OAuth2 client {} with scopes {} (the secret is shown once; get tokens \
                 at POST /oauth/token with grant_type=client_credentials)\nclient_id: {}\n\
                 client_secret: {secret}",
                client.client_id,
                clients::scopes_text(&client.scopes),
                client.client_id
            ))?;
        }
        ClientCmd::Secret { name } => {
            let secret = clients::generate_secret();
            let hash = hash(secret.clone()).await?;
            if !clients::set_secret_hash(db, &name, &hash).await? {
                return Err(no_client(&name).into());
            }
            say(&format!(
                "new secret of client {} (shown once; the old secret no longer works)\n\
                 client_id: {}\nclient_secret: {secret}",
                name.to_ascii_lowercase(),
                name.to_ascii_lowercase()
            ))?;
        }
        ClientCmd::Del { name } => {
            if !clients::delete(db, &name).await? {
                return Err(no_client(&name).into());
            }
            say(&format!("deleted client {}", name.to_ascii_lowercase()))?;
        }
        ClientCmd::List => say(&clients::table(&clients::list(db).await?))?,
    }
    Ok(())
}
