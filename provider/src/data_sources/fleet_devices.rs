//! Data source `fleet_devices`: the devices matching a query (all devices
//! without one) — their ids and how many there are (`device_count`). The query language is
//! the one of `fleet_device_group.query`, checked at plan time.

use async_trait::async_trait;
use fleet_api::{Device, Page};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::api_diag;
use crate::tfplugin::{
    AttrPath, Attribute, Block, DataSource, Diagnostic, Diagnostics, Schema, Value,
};

pub struct DevicesData;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    query: Option<String>,
    ids: Option<Vec<String>>,
    device_count: Option<i64>,
}

#[async_trait]
impl DataSource<Client> for DevicesData {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_devices"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("The devices matching a query, e.g. to size a rollout or gate on a fleet's composition.")
                .attr(
                    Attribute::string("query")
                        .optional()
                        .description("Expression over device fields and attributes, e.g. `hardware == \"meter-v2\" and attr.region in [\"eu-west\", \"eu-north\"]` (the language of `fleet_device_group.query`). Omit to list every device."),
                )
                .attr(
                    Attribute::string_list("ids")
                        .computed()
                        .description("Ids of the matching devices, sorted."),
                )
                .attr(
                    Attribute::number("device_count")
                        .computed()
                        .description("Number of matching devices. (Not `count`: Terraform reserves that name for the meta-argument.)"),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(q) = config.attr("query").and_then(Value::as_str) {
            if let Err(e) = fleet_domain::query::parse(q) {
                diags.push(
                    Diagnostic::error("Invalid device query", e.to_string())
                        .at(AttrPath::root("query")),
                );
            }
        }
    }

    async fn read(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        let filter = config
            .query
            .as_deref()
            .map(|q| format!("&query={}", percent_encode(q)))
            .unwrap_or_default();
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let after = token
                .as_deref()
                .map(|t| format!("&page_token={t}"))
                .unwrap_or_default();
            let page: Page<Device> = client
                .get(&format!("/v1/devices?limit=1000{filter}{after}"))
                .await
                .map_err(|e| api_diag("Could not list devices", e))?;
            ids.extend(page.items.into_iter().map(|d| d.id));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        ids.sort();
        Ok(Model {
            query: config.query,
            device_count: Some(ids.len() as i64),
            ids: Some(ids),
        })
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded_for_the_url() {
        assert_eq!(
            percent_encode("attr.region == \"eu\" & x+y"),
            "attr.region%20%3D%3D%20%22eu%22%20%26%20x%2By"
        );
    }

    #[test]
    fn bad_query_is_reported_with_its_position() {
        let cfg = Value::Object(
            [("query".to_string(), Value::String("hardware == ".into()))]
                .into_iter()
                .collect(),
        );
        let mut d = Diagnostics::new();
        DevicesData.validate(&cfg, &mut d);
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].path, Some(AttrPath::root("query")));
        assert!(d.0[0].detail.starts_with("line 1, col "), "{:?}", d.0[0]);
    }
}
