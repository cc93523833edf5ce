//! `--plot`: goodput vs offered rate and GPUs needed vs offered rate, one
//! line per policy, as an SVG (plotters' SVG backend needs no fonts or
//! system libraries, so it renders the same everywhere).

use std::path::Path;

use plotters::prelude::*;

/// One policy's points: (offered req/s, goodput req/s) and (offered req/s, GPUs needed).
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub policy: String,
    pub goodput: Vec<(f64, f64)>,
    pub gpus: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes the two charts side by side to `path` (must end in `.svg`).
pub fn write_svg(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(format!(
            "--plot writes SVG; name the file `….svg` (got {}); convert it to PNG with any SVG tool, e.g. `rsvg-convert -o out.png file.svg`",
            path.display()
        ));
    }
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(600);
    let max_x = series
        .iter()
        .flat_map(|s| s.goodput.iter().chain(&s.gpus))
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let max_good = series.iter().flat_map(|s| &s.goodput).map(|p| p.1).fold(1.0, f64::max);
    let max_gpus = series.iter().flat_map(|s| &s.gpus).map(|p| p.1).fold(1.0, f64::max);
    for (area, pick, ymax, ydesc) in [
        (&left, 0, max_good, "goodput (req/s, bad rate counted)"),
        (&right, 1, max_gpus, "GPUs needed for bad rate ≤ target"),
    ] {
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x * 1.05, 0.0..ymax * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("offered rate (req/s)")
            .y_desc(ydesc)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = if pick == 0 { &s.goodput } else { &s.gpus };
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.policy.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
