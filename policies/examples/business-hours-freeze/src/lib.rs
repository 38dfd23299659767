//! Freeze tables during business hours: keys of the configured tables may
//! not move between `start_hour` and `end_hour` (local time at
//! `utc_offset_hours`); during those hours their earliest move time is the
//! end of the business day. Other tables, and every table outside business
//! hours, are left alone.
//!
//! Configuration: `tables = payments,orders`, `start_hour = 9`,
//! `end_hour = 17`, `utc_offset_hours = 0`.

use shadowcast_policy::{Batch, Column, Config, Decisions, Policy, export_policy};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

pub struct BusinessHoursFreeze {
    tables: Vec<String>,
    start_hour: i64,
    end_hour: i64,
    utc_offset_hours: i64,
}

impl Policy for BusinessHoursFreeze {
    const COLUMNS: &'static [Column] = &[Column::TABLE];

    fn configure(config: &Config) -> Result<Self, String> {
        let tables: Vec<String> = config
            .get("tables")
            .ok_or("configuration needs `tables = name,name,...`")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let start_hour = config.parse_or("start_hour", 9)?;
        let end_hour = config.parse_or("end_hour", 17)?;
        let utc_offset_hours = config.parse_or("utc_offset_hours", 0)?;
        if !(0..24).contains(&start_hour) || !(1..=24).contains(&end_hour) || start_hour >= end_hour
        {
            return Err(format!(
                "business hours must satisfy 0 <= start_hour < end_hour <= 24, got {start_hour}..{end_hour}"
            ));
        }
        Ok(BusinessHoursFreeze {
            tables,
            start_hour,
            end_hour,
            utc_offset_hours,
        })
    }

    fn decide(&mut self, batch: &Batch, out: &mut Decisions) {
        out.weight.fill(1.0);
        let local = batch.now_us + self.utc_offset_hours * HOUR_US;
        let day_start = local.div_euclid(DAY_US) * DAY_US;
        let hour = (local - day_start) / HOUR_US;
        if hour < self.start_hour || hour >= self.end_hour {
            return;
        }
        let reopens = day_start + self.end_hour * HOUR_US - self.utc_offset_hours * HOUR_US;
        let frozen: Vec<u32> = self
            .tables
            .iter()
            .filter_map(|t| batch.table_id(t))
            .collect();
        for (i, table) in batch.table_ids().iter().enumerate() {
            if frozen.contains(table) {
                out.not_before_us[i] = reopens;
            }
        }
    }
}

export_policy!(BusinessHoursFreeze);
