//! The handlers, one file per area, each with the [`Route`](crate::api::Route)s it declares.

pub mod deploy;
pub mod envsync;
pub mod genesis;
pub mod ledger;
pub mod system;
pub mod vault;

use crate::route::{In, Param, ParamType};

pub(crate) const fn path_param(
    name: &'static str,
    kind: ParamType,
    description: &'static str,
) -> Param {
    Param {
        name,
        location: In::Path,
        required: true,
        kind,
        description,
    }
}

pub(crate) const fn query(
    name: &'static str,
    kind: ParamType,
    required: bool,
    description: &'static str,
) -> Param {
    Param {
        name,
        location: In::Query,
        required,
        kind,
        description,
    }
}
