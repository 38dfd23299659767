//! Bearer tokens: who is calling, checked on every request before a
//! handler runs. Executor and admin tokens are kept apart; handlers of
//! calls that change models, policies or the migration ask for
//! [`Role::Admin`].

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Executor,
    Admin,
}

/// Which executor token the caller presented (its position among the
/// configured tokens, from 1), or [`Caller::ANYONE`] for an admin or when
/// no tokens are configured. Leases are bound to it: only the caller that
/// took a lease (or an admin) may extend or acknowledge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller(pub u32);

impl Caller {
    pub const ANYONE: Caller = Caller(0);

    /// The caller of `request` (set by [`Auth`]).
    pub fn of<T>(request: &Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::ANYONE)
    }
}

/// The configured tokens, as SHA-256 digests (compared in constant time).
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<Vec<([u8; 32], Role)>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    pub fn new(executor_tokens: &[String], admin_tokens: &[String]) -> Self {
        let executors = executor_tokens.iter().map(|t| (digest(t), Role::Executor));
        let admins = admin_tokens.iter().map(|t| (digest(t), Role::Admin));
        Auth {
            tokens: Arc::new(executors.chain(admins).collect()),
        }
    }

    fn role_of(&self, token: &str) -> Option<(Role, Caller)> {
        let presented = digest(token);
        // Look at every token whatever matches, so timing says nothing.
        self.tokens
            .iter()
            .enumerate()
            .fold(None, |found, (position, (known, role))| {
                let differs = known
                    .iter()
                    .zip(&presented)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                let caller = match role {
                    Role::Executor => Caller(position as u32 + 1),
                    Role::Admin => Caller::ANYONE,
                };
                if differs == 0 {
                    Some((*role, caller))
                } else {
                    found
                }
            })
    }

    /// The caller's role and identity from its `authorization` header
    /// (every caller is an admin when no tokens are configured); the error
    /// says what is wrong.
    pub fn role_from(&self, header: Option<&[u8]>) -> Result<(Role, Caller), &'static str> {
        if self.tokens.is_empty() {
            return Ok((Role::Admin, Caller::ANYONE));
        }
        let header = header.ok_or("missing `authorization: Bearer TOKEN`")?;
        let header =
            std::str::from_utf8(header).map_err(|_| "the authorization header is not text")?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or("authorization must be `Bearer TOKEN`")?;
        self.role_of(token.trim()).ok_or("unknown token")
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let (role, caller) = self.role_from(header).map_err(Status::unauthenticated)?;
        request.extensions_mut().insert(role);
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Refuses the call unless it came with an admin token (or no tokens are
/// configured).
pub fn require_admin<T>(request: &Request<T>, call: &str) -> Result<(), Status> {
    match request.extensions().get::<Role>() {
        Some(Role::Admin) => Ok(()),
        _ => Err(Status::permission_denied(format!(
            "{call} needs an admin token; this one is an executor's"
        ))),
    }
}
