//! The `fleet` provider: its configuration and the list of resource and
//! data source types it offers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::client::Client;
use crate::resources;
use crate::tfplugin::{
    validators, AnyDataSource, AnyEphemeralResource, AnyResource, Attribute, Block, Diagnostic,
    Diagnostics, Schema,
};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8470";

pub struct FleetProvider;

#[derive(Deserialize)]
pub struct ProviderConfig {
    endpoint: Option<String>,
    token: Option<String>,
    timeout_seconds: Option<u64>,
}

#[async_trait]
impl crate::tfplugin::Provider for FleetProvider {
    type Client = Client;
    type Config = ProviderConfig;

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Manages a Fleetform fleet in **fleetd**: device groups, certificates, policies and firmware rollouts.")
                .attr(
                    Attribute::string("endpoint")
                        .optional()
                        .description("Base URL of fleetd's admin API. Defaults to `FLEET_ENDPOINT`, then `http://127.0.0.1:8470`.")
                        .validate(validators::string(|s| {
                            if s.starts_with("http://") || s.starts_with("https://") {
                                Ok(())
                            } else {
                                Err(format!("{s:?} must be an http:// or https:// URL"))
                            }
                        })),
                )
                .attr(
                    Attribute::string("token")
                        .optional()
                        .sensitive()
                        .description("Admin API bearer token. Defaults to `FLEET_TOKEN`."),
                )
                .attr(
                    Attribute::number("timeout_seconds")
                        .optional()
                        .description("Timeout of one admin API request, in seconds (default 30).")
                        .validate(validators::int_between(1, 3600)),
                ),
        )
    }

    async fn configure(
        &self,
        config: ProviderConfig,
        _terraform_version: &str,
    ) -> Result<Client, Diagnostics> {
        let endpoint = config
            .endpoint
            .or_else(|| {
                std::env::var("FLEET_ENDPOINT")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = config
            .token
            .or_else(|| std::env::var("FLEET_TOKEN").ok().filter(|s| !s.is_empty()));
        let Some(token) = token else {
            return Err(Diagnostic::error(
                "Missing fleetd token",
                "Set `token` in the provider block or the FLEET_TOKEN environment variable. fleetd writes its admin token to `<data-dir>/admin-token` on first start.",
            )
            .at(crate::tfplugin::AttrPath::root("token"))
            .into());
        };
        let timeout = Duration::from_secs(config.timeout_seconds.unwrap_or(30));
        Client::new(&endpoint, &token, timeout).map_err(|e| {
            Diagnostic::error("Invalid provider configuration", e)
                .at(crate::tfplugin::AttrPath::root("endpoint"))
                .into()
        })
    }

    fn resources(&self) -> Vec<Arc<dyn AnyResource<Client>>> {
        resources::all()
    }

    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<Client>>> {
        crate::data_sources::all()
    }

    fn ephemeral_resources(&self) -> Vec<Arc<dyn AnyEphemeralResource<Client>>> {
        crate::ephemeral_resources::all()
    }
}
