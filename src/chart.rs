//! Line charts as PNG, shared by the reports that draw shares against a
//! budget or a time (`evaluate`, `simulate`).
//!
//! Takes: panels of named series of (x, y) points, y a share in [0, 1].
//! Gives: one PNG with the panels side by side under a title.
//! Guarantees: a series keeps its colour in every panel (the colour follows
//! its name's position in [`series_colours`]), the oracle is drawn in a
//! near-black navy (not the text's black) and thicker; a panel with no
//! finite series shows its note instead of an empty plot.
//!
//! Text is drawn with the system's `sans-serif` font (fontconfig); without
//! one, the error says so.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 640;

/// The series drawn as the reference everything else is judged against.
pub const ORACLE: &str = "oracle";

const ORACLE_COLOUR: RGBColor = RGBColor(20, 24, 70);

/// Colours of the other series, in the order they come.
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

/// The colour (RGB) of each series, in the order given: the oracle navy,
/// the others from a fixed palette.
pub fn series_colours(names: &[&str]) -> Vec<(u8, u8, u8)> {
    let mut others = PALETTE.iter().cycle();
    names
        .iter()
        .map(|name| {
            let colour = if *name == ORACLE {
                &ORACLE_COLOUR
            } else {
                others.next().expect("the palette cycles")
            };
            (colour.0, colour.1, colour.2)
        })
        .collect()
}

/// One curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One plot of the figure.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: Range<f64>,
    pub x_format: fn(&f64) -> String,
    pub series: Vec<Series>,
    /// Shown instead of the curves when no series has only finite points.
    pub empty_note: String,
}

/// Draws `panels` side by side under `title` to `path` (its folder is
/// created). The error is a sentence naming the cause.
pub fn write_png(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    crate::export::create_parent_dir(path).map_err(|e| format!("creating its folder: {e}"))?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let body = root.titled(title, ("sans-serif", 24))?;
        let areas = body.split_evenly((1, panels.len().max(1)));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| {
        let problem = e.to_string();
        if problem.to_lowercase().contains("font") {
            format!(
                "{problem} (the chart needs a `sans-serif` system font, e.g. Debian's fonts-dejavu-core)"
            )
        } else {
            problem
        }
    })
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    panel: &Panel,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 19))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(panel.x_range.clone(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_label_formatter(&panel.x_format)
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    let names: Vec<&str> = panel.series.iter().map(|s| s.name.as_str()).collect();
    let mut drawn = 0;
    for (series, (red, green, blue)) in panel.series.iter().zip(series_colours(&names)) {
        if series
            .points
            .iter()
            .any(|(x, y)| !x.is_finite() || !y.is_finite())
        {
            continue;
        }
        let colour = RGBColor(red, green, blue);
        let width = if series.name == ORACLE { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                series.points.iter().copied(),
                colour.stroke_width(width),
            ))?
            .label(series.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(width))
            });
        drawn += 1;
    }
    if drawn == 0 {
        let x = panel.x_range.start + 0.1 * (panel.x_range.end - panel.x_range.start);
        chart.draw_series(std::iter::once(Text::new(
            panel.empty_note.clone(),
            (x, 0.5),
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
