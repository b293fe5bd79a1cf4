//! SVG plots of a capacity sweep (plotters): latency percentiles and loss against offered
//! load, and each step's HDR percentile curve. Drawing only; the planner decides what.

use std::path::Path;

use plotters::prelude::*;

/// A plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plot {file}: {message}")]
pub struct PlotError {
    file: String,
    message: String,
}

fn err(file: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Lines over a shared x axis; `log_y` draws y on a log scale.
pub fn lines(
    file: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hline: Option<(String, f64)>,
    log_y: bool,
) -> Result<(), PlotError> {
    let pts = series.iter().flat_map(|(_, v)| v.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some((_, y)) = &hline {
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(file, e))?;
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| err(file, e))?;
            for (i, (name, v)) in series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(v.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| err(file, e))?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(v.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| err(file, e))?;
            }
            if let Some((name, y)) = &hline {
                chart
                    .draw_series(LineSeries::new(
                        vec![(x0, *y), (x1, *y)],
                        BLACK.stroke_width(1),
                    ))
                    .map_err(|e| err(file, e))?
                    .label(name.clone())
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(file, e))?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if log_y {
        let lo = (y0.max(1e-3) / 1.5).max(1e-3);
        draw!(
            builder
                .build_cartesian_2d(x0..x1, (lo..(y1.max(lo) * 1.5)).log_scale())
                .map_err(|e| err(file, e))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, y0.min(0.0)..(y1 * 1.1).max(1e-6))
                .map_err(|e| err(file, e))?
        );
    }
    root.present().map_err(|e| err(file, e))
}
