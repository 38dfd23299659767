//! The evaluation chart: capture against budget for every method, as a PNG.
//!
//! Takes: the [`MethodResult`]s of one evaluation. Gives: a two-panel PNG —
//! accesses captured by the top keys, and bytes read captured within a byte
//! budget — with one curve per method, the oracle in a near-black navy (not
//! the text's black, so its curve can be told apart). Guarantees: every
//! method keeps the same colour in both panels and in [`series_colours`], so
//! readers (and tests) can tell the curves apart; a trace without sizes gets
//! a note in the byte panel instead of an empty plot.
//!
//! Text is drawn with the system's `sans-serif` font (fontconfig); without
//! one, the error says so.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::ModelError;
use super::evaluate::{CURVE_PERCENT, MethodResult, curve_budget};

pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 640;

const ORACLE: RGBColor = RGBColor(20, 24, 70);

/// Curve colours of the non-oracle methods, in the order they come.
const PALETTE: [RGBColor; 8] = [
    RGBColor(160, 160, 160),
    RGBColor(230, 140, 20),
    RGBColor(40, 110, 200),
    RGBColor(40, 160, 70),
    RGBColor(210, 40, 40),
    RGBColor(150, 60, 180),
    RGBColor(20, 170, 170),
    RGBColor(190, 170, 20),
];

/// The curve colour (RGB) of each method, in the order given: the oracle
/// navy, the others from a fixed palette.
pub fn series_colours(methods: &[&str]) -> Vec<(u8, u8, u8)> {
    let mut others = PALETTE.iter().cycle();
    methods
        .iter()
        .map(|method| {
            let colour = if *method == "oracle" {
                &ORACLE
            } else {
                others.next().expect("the palette cycles")
            };
            (colour.0, colour.1, colour.2)
        })
        .collect()
}

struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    curve: fn(&MethodResult) -> &[f64],
}

/// Draws `results` to `path`; `subtitle` says which cut-off and horizon.
pub fn write_chart(
    path: &Path,
    subtitle: &str,
    results: &[MethodResult],
) -> Result<(), ModelError> {
    let failed = |problem: String| ModelError::Chart {
        path: path.to_path_buf(),
        problem,
    };
    super::create_parent_dir(path)?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let body = root.titled(
            &format!("Capture vs budget — {subtitle}"),
            ("sans-serif", 24),
        )?;
        let panels = body.split_evenly((1, 2));
        let layouts = [
            Panel {
                title: "Accesses captured by the top keys",
                x_label: "budget (% of keys pre-migrated)",
                y_label: "share of the horizon's accesses",
                curve: |r| &r.curve_keys,
            },
            Panel {
                title: "Bytes read captured within a byte budget",
                x_label: "budget (% of bytes pre-migrated)",
                y_label: "share of the horizon's bytes read",
                curve: |r| &r.curve_bytes,
            },
        ];
        for (area, layout) in panels.iter().zip(&layouts) {
            draw_panel(area, layout, results)?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| {
        let problem = e.to_string();
        if problem.to_lowercase().contains("font") {
            failed(format!(
                "{problem} (the chart needs a `sans-serif` system font, e.g. Debian's fonts-dejavu-core)"
            ))
        } else {
            failed(problem)
        }
    })
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    layout: &Panel<'_>,
    results: &[MethodResult],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(layout.title, ("sans-serif", 19))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..CURVE_PERCENT as f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc(layout.x_label)
        .y_desc(layout.y_label)
        .x_label_formatter(&|x| format!("{x:.0}%"))
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    let methods: Vec<&str> = results.iter().map(|r| r.method.as_str()).collect();
    let mut drawn = 0;
    for (result, (red, green, blue)) in results.iter().zip(series_colours(&methods)) {
        let curve = (layout.curve)(result);
        if curve.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let points = std::iter::once((0.0, 0.0)).chain(
            curve
                .iter()
                .enumerate()
                .map(|(i, v)| (100.0 * curve_budget(i), *v)),
        );
        let colour = RGBColor(red, green, blue);
        let width = if result.method == "oracle" { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(width)))?
            .label(result.method.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(width))
            });
        drawn += 1;
    }
    if drawn == 0 {
        chart.draw_series(std::iter::once(Text::new(
            "no bytes read in this trace (no sizes)",
            (2.0, 0.5),
            ("sans-serif", 18),
        )))?;
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
