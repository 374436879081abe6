//! Small inline SVG charts for the rendered documents, drawn with plotters'
//! SVG backend into a string.
//!
//! Text: plotters is built without a font feature (`ttf`, `ab_glyph`), so
//! it uses its "naive" font, which only estimates text extents for layout.
//! That is enough here: the SVG backend writes text itself as escaped
//! `<text>` elements and never asks the font to rasterise glyphs (only the
//! bitmap backends would, and they panic without a font). So plotters draws
//! the tick labels (dates "MM-DD" and numbers, the same in every language)
//! and the "no data" notice; titles and legends are HTML around the SVG,
//! where they are translated, escaped by the template and wrap like text.
//!
//! Greyscale: series differ by dash pattern and markers, not only by
//! colour, so a black-and-white print still tells them apart.

use std::collections::BTreeSet;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::model::DailyValue;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 220;

const INK: RGBColor = RGBColor(0x1a, 0x1a, 0x1a);
const MUTED: RGBColor = RGBColor(0x5f, 0x63, 0x68);
const GRID: RGBColor = RGBColor(0xdd, 0xe1, 0xe5);
const ACCENT: RGBColor = RGBColor(0x1f, 0x4e, 0x79);
const BAR: RGBColor = RGBColor(0x44, 0x54, 0x6a);

/// Drawing failed (plotters reports it as an error, never a panic).
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart: {0}")]
pub struct ChartError(String);

fn chart_error(error: impl std::fmt::Display) -> ChartError {
    ChartError(error.to_string())
}

/// How one line of a multi-line chart looks.
struct LineLook {
    color: RGBColor,
    dash: Option<(u32, u32)>,
    marker: Marker,
}

#[derive(Clone, Copy)]
enum Marker {
    None,
    Circle,
    Square,
}

const LOOKS: [LineLook; 5] = [
    LineLook {
        color: ACCENT,
        dash: None,
        marker: Marker::None,
    },
    LineLook {
        color: RGBColor(0xa4, 0x16, 0x1a),
        dash: Some((7, 4)),
        marker: Marker::None,
    },
    LineLook {
        color: RGBColor(0x1e, 0x6b, 0x35),
        dash: None,
        marker: Marker::Circle,
    },
    LineLook {
        color: RGBColor(0x70, 0x30, 0xa0),
        dash: Some((2, 3)),
        marker: Marker::None,
    },
    LineLook {
        color: RGBColor(0x8a, 0x5a, 0x00),
        dash: Some((7, 4)),
        marker: Marker::Square,
    },
];

/// How many series a multi-line chart tells apart (more would repeat looks).
pub const MAX_SERIES: usize = LOOKS.len();

/// Y axis of a line chart.
#[derive(Debug, Clone, Copy)]
pub enum PercentAxis {
    /// 0–100.
    Full,
    /// From just below the lowest value to 100, for values that are all
    /// near the top (availability), where 0–100 would draw a flat line.
    ZoomToData,
}

/// A line chart of one daily percentage series, shaded below the line.
pub fn percent_line_chart(
    days: &[DailyValue],
    axis: PercentAxis,
    no_data: &str,
) -> Result<String, ChartError> {
    line_chart(&[days], axis, true, no_data)
}

/// A line chart of up to [`MAX_SERIES`] daily percentage series on a 0–100
/// axis; series `i` looks like [`legend_swatch`]`(i)`.
pub fn percent_multi_line_chart(
    series: &[&[DailyValue]],
    no_data: &str,
) -> Result<String, ChartError> {
    line_chart(series, PercentAxis::Full, false, no_data)
}

/// A bar chart of daily counts.
pub fn count_bar_chart(days: &[DailyValue], no_data: &str) -> Result<String, ChartError> {
    let values: Vec<Option<f64>> = days.iter().map(|d| finite(d.value)).collect();
    let dates: Vec<&str> = days.iter().map(|d| d.date.as_str()).collect();
    let max = values.iter().flatten().fold(0.0_f64, |max, v| max.max(*v));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        if values.iter().all(Option::is_none) {
            draw_no_data(&root, no_data)?;
        } else {
            let top = (max + 1.0).ceil();
            let x_range = -0.5..(dates.len() as f64 - 0.5);
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(26)
                .y_label_area_size(40)
                .build_cartesian_2d(x_range, 0.0..top)
                .map_err(chart_error)?;
            let x_label = |x: &f64| date_tick(&dates, *x);
            let y_label = |y: &f64| integer_tick(*y);
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(TRANSPARENT)
                .bold_line_style(GRID)
                .axis_style(MUTED)
                .x_labels(dates.len().clamp(2, 10))
                .y_labels(top.clamp(2.0, 6.0) as usize)
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_label)
                .label_style(("sans-serif", 12).into_font().color(&INK))
                .draw()
                .map_err(chart_error)?;
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                let x = i as f64;
                v.map(|v| Rectangle::new([(x - 0.35, 0.0), (x + 0.35, v)], BAR.filled()))
            });
            chart.draw_series(bars).map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    inline_svg(&svg)
}

/// The small line sample shown next to series `index` in a legend.
pub fn legend_swatch(index: usize) -> String {
    let look = &LOOKS[index % LOOKS.len()];
    let RGBColor(r, g, b) = look.color;
    let dash = look
        .dash
        .map(|(on, off)| format!(" stroke-dasharray=\"{on} {off}\""))
        .unwrap_or_default();
    let marker = match look.marker {
        Marker::None => String::new(),
        Marker::Circle => {
            format!("<circle cx=\"15\" cy=\"5\" r=\"3\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>")
        }
        Marker::Square => {
            format!(
                "<rect x=\"12\" y=\"2\" width=\"6\" height=\"6\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>"
            )
        }
    };
    format!(
        "<svg class=\"swatch\" viewBox=\"0 0 30 10\" width=\"30\" height=\"10\" aria-hidden=\"true\">\
         <line x1=\"0\" y1=\"5\" x2=\"30\" y2=\"5\" stroke=\"#{r:02x}{g:02x}{b:02x}\" stroke-width=\"2\"{dash}/>{marker}</svg>"
    )
}

fn line_chart(
    series: &[&[DailyValue]],
    axis: PercentAxis,
    shade_first: bool,
    no_data: &str,
) -> Result<String, ChartError> {
    // Series may cover different days (a filesystem added mid-period); the
    // x axis is the union of their dates, which sort as "YYYY-MM-DD".
    let dates: Vec<&str> = series
        .iter()
        .flat_map(|days| days.iter().map(|d| d.date.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let position = |date: &str| dates.binary_search(&date).ok().map(|i| i as f64);
    let points: Vec<Vec<(f64, Option<f64>)>> = series
        .iter()
        .map(|days| {
            days.iter()
                .filter_map(|d| Some((position(&d.date)?, finite(d.value))))
                .collect()
        })
        .collect();
    let values = || points.iter().flatten().filter_map(|(_, v)| *v);
    let y_range = match (axis, values().reduce(f64::min)) {
        (PercentAxis::ZoomToData, Some(lowest)) => {
            let highest = values().fold(100.0_f64, f64::max);
            (lowest.floor() - 1.0).clamp(0.0, 99.0)..highest.ceil()
        }
        _ => 0.0..values().fold(100.0_f64, f64::max).ceil(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        if values().next().is_none() {
            draw_no_data(&root, no_data)?;
        } else {
            let x_range = if dates.len() <= 1 {
                -0.5..0.5
            } else {
                0.0..(dates.len() - 1) as f64
            };
            draw_lines(&root, &dates, &points, x_range, y_range, shade_first)?;
        }
        root.present().map_err(chart_error)?;
    }
    inline_svg(&svg)
}

fn draw_lines(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    dates: &[&str],
    series: &[Vec<(f64, Option<f64>)>],
    x_range: Range<f64>,
    y_range: Range<f64>,
    shade_first: bool,
) -> Result<(), ChartError> {
    let bottom = y_range.start;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(26)
        .y_label_area_size(44)
        .build_cartesian_2d(x_range, y_range)
        .map_err(chart_error)?;
    let x_label = |x: &f64| date_tick(dates, *x);
    let y_label = |y: &f64| format!("{y:.0}");
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(MUTED)
        .x_labels(dates.len().clamp(2, 10))
        .y_labels(6)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 12).into_font().color(&INK))
        .draw()
        .map_err(chart_error)?;
    // A marker every few points at most, or a year of days is a smear.
    let longest = series.iter().map(Vec::len).max().unwrap_or(0);
    let marker_every = (longest / 15).max(1);
    for (index, points) in series.iter().enumerate() {
        let look = &LOOKS[index % LOOKS.len()];
        let line = look.color.stroke_width(2);
        for run in known_runs(points) {
            if shade_first && index == 0 && run.len() > 1 {
                let fill = look.color.mix(0.12).filled();
                chart
                    .draw_series(AreaSeries::new(run.iter().copied(), bottom, fill))
                    .map_err(chart_error)?;
            }
            match look.dash {
                // A lone known day between gaps has no line to draw: a dot
                // keeps it visible.
                _ if run.len() == 1 => {
                    chart
                        .draw_series(run.iter().map(|p| Circle::new(*p, 3, look.color.filled())))
                        .map_err(chart_error)?;
                }
                Some((on, off)) => {
                    chart
                        .draw_series(DashedLineSeries::new(run.iter().copied(), on, off, line))
                        .map_err(chart_error)?;
                }
                None => {
                    chart
                        .draw_series(LineSeries::new(run.iter().copied(), line))
                        .map_err(chart_error)?;
                }
            }
            let marked = run.iter().step_by(marker_every);
            match look.marker {
                Marker::None => {}
                Marker::Circle => {
                    chart
                        .draw_series(marked.map(|p| Circle::new(*p, 3, look.color.filled())))
                        .map_err(chart_error)?;
                }
                Marker::Square => {
                    chart
                        .draw_series(marked.map(|p| {
                            EmptyElement::at(*p)
                                + Rectangle::new([(-3, -3), (3, 3)], look.color.filled())
                        }))
                        .map_err(chart_error)?;
                }
            }
        }
    }
    Ok(())
}

/// Consecutive known points; an unknown day breaks the line rather than
/// being drawn as 0 or bridged.
fn known_runs(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (x, value) in points {
        match value {
            Some(y) => current.push((*x, *y)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn draw_no_data(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    no_data: &str,
) -> Result<(), ChartError> {
    let frame = ShapeStyle {
        color: GRID.to_rgba(),
        filled: false,
        stroke_width: 1,
    };
    root.draw(&Rectangle::new(
        [(1, 1), (WIDTH as i32 - 2, HEIGHT as i32 - 2)],
        frame,
    ))
    .map_err(chart_error)?;
    let style = ("sans-serif", 18)
        .into_font()
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(
        no_data,
        (WIDTH as i32 / 2, HEIGHT as i32 / 2),
        style,
    ))
    .map_err(chart_error)?;
    Ok(())
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// "MM-DD" for a tick on a day; nothing for ticks between days.
fn date_tick(dates: &[&str], x: f64) -> String {
    let index = x.round();
    if (x - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    dates
        .get(index as usize)
        .map(|date| date.get(5..).unwrap_or(date).to_owned())
        .unwrap_or_default()
}

/// Whole numbers only: a count axis has no "0.5 incidents".
fn integer_tick(y: f64) -> String {
    if (y - y.round()).abs() > 1e-6 {
        String::new()
    } else {
        format!("{y:.0}")
    }
}

/// Replaces plotters' `<svg ...>` opening tag with one fit for inline HTML:
/// scalable (CSS sets the width), hidden from screen readers (the figure
/// caption says what it shows), and without the `xmlns` URL, which HTML does
/// not need and which would be the only `http://` in a self-contained page.
fn inline_svg(svg: &str) -> Result<String, ChartError> {
    let body_start = svg
        .find('>')
        .ok_or_else(|| ChartError("plotters wrote no <svg> tag".to_owned()))?;
    Ok(format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"xMidYMid meet\" \
         aria-hidden=\"true\" focusable=\"false\">{}",
        &svg[body_start + 1..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, value: Option<f64>) -> DailyValue {
        DailyValue {
            date: date.to_owned(),
            value,
        }
    }

    #[test]
    fn empty_and_all_unknown_series_say_no_data() {
        let unknown = [day("2026-11-01", None), day("2026-11-02", None)];
        for svg in [
            percent_line_chart(&[], PercentAxis::ZoomToData, "no data").unwrap(),
            percent_line_chart(&unknown, PercentAxis::Full, "no data").unwrap(),
            percent_multi_line_chart(&[], "no data").unwrap(),
            count_bar_chart(&[], "no data").unwrap(),
            count_bar_chart(&unknown, "无数据 <x>").unwrap(),
        ] {
            assert!(svg.starts_with("<svg class=\"chart\""), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("no data") || svg.contains("无数据 &lt;x&gt;"));
            assert!(!svg.contains("http"));
        }
    }

    #[test]
    fn gaps_break_lines_and_single_days_draw() {
        let days = [
            day("2026-11-01", Some(99.0)),
            day("2026-11-02", None),
            day("2026-11-03", Some(98.5)),
            day("2026-11-04", Some(100.0)),
        ];
        let svg = percent_line_chart(&days, PercentAxis::ZoomToData, "no data").unwrap();
        assert!(svg.contains("<circle"), "the lone first day is a dot");
        assert!(svg.contains("11-03"));
        let one = count_bar_chart(&[day("2026-11-01", Some(0.0))], "no data").unwrap();
        assert!(!one.contains("no data"));
    }

    #[test]
    fn a_year_of_days_renders() {
        let year: Vec<DailyValue> = (0..365)
            .map(|i| {
                day(
                    &format!("2026-{:02}-{:02}", i / 31 + 1, i % 31 + 1),
                    Some(50.0 + f64::from(i) / 10.0),
                )
            })
            .collect();
        let series = [year.as_slice(); MAX_SERIES];
        let svg = percent_multi_line_chart(&series, "no data").unwrap();
        assert!(svg.len() < 2_000_000, "{} bytes", svg.len());
        count_bar_chart(&year, "no data").unwrap();
    }

    #[test]
    fn known_runs_split_at_unknown_days() {
        let points = [
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(2.0)),
            (3.0, Some(3.0)),
        ];
        assert_eq!(
            known_runs(&points),
            vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
        );
    }
}
