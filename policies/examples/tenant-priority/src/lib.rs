//! Tenant priority from configuration: `tenant.NAME = first|early|normal|last|exclude`
//! sets a tenant's priority class (or excludes its keys), and
//! `weight.NAME = 2.5` scales its keys' weights. Unlisted tenants and keys
//! without a tenant keep the defaults (`default = ...` changes those).

use shadowcast_policy::{Batch, Column, Config, Decisions, Policy, export_policy, priority};

#[derive(Clone, Copy)]
struct Rule {
    class: Option<u32>,
    weight: f64,
}

pub struct TenantPriority {
    rules: Vec<(String, Rule)>,
    default: Rule,
}

fn class(value: &str) -> Result<Option<u32>, String> {
    Ok(Some(match value {
        "first" => priority::FIRST,
        "early" => priority::EARLY,
        "normal" => priority::NORMAL,
        "last" => priority::LAST,
        "exclude" => return Ok(None),
        other => {
            return Err(format!(
                "unknown priority `{other}` (first, early, normal, last or exclude)"
            ));
        }
    }))
}

impl Policy for TenantPriority {
    const COLUMNS: &'static [Column] = &[Column::TENANT];

    fn configure(config: &Config) -> Result<Self, String> {
        let mut rules: Vec<(String, Rule)> = Vec::new();
        fn rule_of(rules: &mut Vec<(String, Rule)>, tenant: &str) -> usize {
            match rules.iter().position(|(t, _)| t == tenant) {
                Some(i) => i,
                None => {
                    rules.push((
                        tenant.to_string(),
                        Rule {
                            class: Some(priority::NORMAL),
                            weight: 1.0,
                        },
                    ));
                    rules.len() - 1
                }
            }
        }
        let mut default = Rule {
            class: Some(priority::NORMAL),
            weight: 1.0,
        };
        for (key, value) in config.entries() {
            if key == "default" {
                default.class = class(value).map_err(|e| format!("`default`: {e}"))?;
            } else if let Some(tenant) = key.strip_prefix("tenant.") {
                let i = rule_of(&mut rules, tenant);
                rules[i].1.class = class(value).map_err(|e| format!("`{key}`: {e}"))?;
            } else if let Some(tenant) = key.strip_prefix("weight.") {
                let weight: f64 = value
                    .parse()
                    .map_err(|e| format!("`{key} = {value}`: {e}"))?;
                if !(weight >= 0.0 && weight.is_finite()) {
                    return Err(format!(
                        "`{key} = {value}`: weights must be finite and >= 0"
                    ));
                }
                let i = rule_of(&mut rules, tenant);
                rules[i].1.weight = weight;
            } else {
                return Err(format!(
                    "unknown setting `{key}` (tenant.NAME, weight.NAME or default)"
                ));
            }
        }
        Ok(TenantPriority { rules, default })
    }

    fn decide(&mut self, batch: &Batch, out: &mut Decisions) {
        // Rules by this batch's tenant ids, resolved once per batch.
        let by_id: Vec<Rule> = (0..batch.tenant_names.len())
            .map(|id| {
                let name = batch.tenant_names.text(id);
                self.rules
                    .iter()
                    .find(|(t, _)| t == name)
                    .map_or(self.default, |(_, r)| *r)
            })
            .collect();
        for (i, id) in batch.tenant_ids().iter().enumerate() {
            let rule = by_id.get(*id as usize).copied().unwrap_or(self.default);
            match rule.class {
                Some(class) => {
                    out.weight[i] = rule.weight;
                    out.priority[i] = class;
                }
                None => out.weight[i] = 0.0,
            }
        }
    }
}

export_policy!(TenantPriority);
