//! Data source types, one file per Terraform type name.

use std::sync::Arc;

use crate::client::Client;
use crate::tfplugin::AnyDataSource;

pub fn all() -> Vec<Arc<dyn AnyDataSource<Client>>> {
    vec![]
}
