//! The server's door: who a request is (the [`Authenticator`]) and
//! whether it may do what it asks (the authorizer of the current
//! [`Mode`]), in one place for the endpoints to ask.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use crate::{
    apimachinery::errors::ApiError,
    auth::{
        aggregation::Changes, authn::Authenticator, forbidden, rbac::Rbac, AlwaysAllow, Attributes,
        Authorizer, UserInfo,
    },
    registry::rest::Objects,
};

/// `--authorization-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Everything is allowed (the in-process default: tests that do not
    /// test RBAC need no grants).
    #[default]
    AlwaysAllow,
    /// Roles and bindings decide, as on a real cluster (the binary's
    /// default).
    Rbac,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "AlwaysAllow" => Ok(Mode::AlwaysAllow),
            "RBAC" => Ok(Mode::Rbac),
            other => Err(format!(
                "authorization mode {other:?} is not supported: use AlwaysAllow or RBAC"
            )),
        }
    }
}

/// Authentication and authorization of one server.
pub struct Gate {
    authn: Authenticator,
    rbac: Rbac,
    rbac_on: AtomicBool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("authn", &self.authn)
            .field("mode", &self.mode())
            .finish()
    }
}

impl Gate {
    /// A door with `authn`, authorizing in `mode` over `objects` (RBAC
    /// re-reading them when `changes` moves on).
    pub fn new(
        objects: Arc<dyn Objects + Send + Sync>,
        authn: Authenticator,
        mode: Mode,
        changes: Changes,
    ) -> Self {
        Gate {
            authn,
            rbac: Rbac::new(objects, changes),
            rbac_on: AtomicBool::new(mode == Mode::Rbac),
        }
    }

    /// The authenticator.
    pub fn authn(&self) -> &Authenticator {
        &self.authn
    }

    /// The authorization mode.
    pub fn mode(&self) -> Mode {
        if self.rbac_on.load(Ordering::Relaxed) {
            Mode::Rbac
        } else {
            Mode::AlwaysAllow
        }
    }

    /// Switches the authorization mode (from the next request on).
    pub fn set_mode(&self, mode: Mode) {
        self.rbac_on.store(mode == Mode::Rbac, Ordering::Relaxed);
    }

    /// The authorizer of the current mode.
    pub fn authorizer(&self) -> &dyn Authorizer {
        match self.mode() {
            Mode::Rbac => &self.rbac,
            Mode::AlwaysAllow => &AlwaysAllow,
        }
    }

    /// Whether `user` may do `attrs`.
    ///
    /// # Errors
    /// kube-apiserver's 403.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        let decision = self.authorizer().authorize(user, attrs);
        if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(user, attrs, &decision.reason))
        }
    }
}
