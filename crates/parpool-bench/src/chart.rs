//! The SVG chart: for W1..W4, each row's median time divided by the
//! section's baseline median (rayon `par_iter` collect for W1..W3,
//! `threadpool` execute + join for W4), on a log scale; and [`bars`], the
//! grouped ratio chart it draws, which other reports reuse.

use crate::workloads::Section;
use plotters::prelude::*;
use std::path::Path;

/// Peers: the "tab20" light/dark pairs, muted.
const PEERS: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(148, 103, 189),
    RGBColor(197, 176, 213),
    RGBColor(140, 86, 75),
    RGBColor(196, 156, 148),
    RGBColor(127, 127, 127),
    RGBColor(199, 199, 199),
    RGBColor(188, 189, 34),
    RGBColor(219, 219, 141),
    RGBColor(23, 190, 207),
    RGBColor(158, 218, 229),
    RGBColor(227, 119, 194),
    RGBColor(247, 182, 210),
];

/// parpool's rows: strong warm colours, so they stand out.
const PARPOOL: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(140, 20, 20),
    RGBColor(230, 85, 13),
    RGBColor(0, 0, 0),
    RGBColor(255, 187, 120),
];

/// Writes the chart to `path`.
pub fn write(path: &Path, sections: &[Section]) -> Result<(), Box<dyn std::error::Error>> {
    // (group label, [(row, ratio)]) for every row that ran.
    let groups: Vec<(String, Vec<(String, f64)>)> = sections
        .iter()
        .map(|sec| {
            let bars = sec
                .timings
                .iter()
                .filter_map(|t| Some((t.name.clone(), sec.ratio(&t.name, sec.baseline)?)))
                .collect();
            (format!("{} (vs {})", sec.id, short(sec.baseline)), bars)
        })
        .collect();
    bars(
        path,
        "parpool-bench: median time relative to baseline (log scale, lower is faster)",
        "time / baseline",
        &groups,
        &|name| name.starts_with("parpool"),
    )
}

/// Writes a grouped bar chart of ratios (log scale, a line at 1.0) to
/// `path`: one group per `(label, bars)`, one colour per bar name across
/// groups. Bars for which `highlight` holds get warm colours and their
/// ratio printed above them.
pub fn bars(
    path: &Path,
    caption: &str,
    y_desc: &str,
    groups: &[(String, Vec<(String, f64)>)],
    highlight: &dyn Fn(&str) -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut series: Vec<String> = Vec::new();
    for (_, bars) in groups {
        for (name, _) in bars {
            if !series.contains(name) {
                series.push(name.clone());
            }
        }
    }
    let is_pp = highlight;
    let color = |name: &str| {
        let same_kind = series.iter().filter(|s| is_pp(s) == is_pp(name));
        let i = same_kind.take_while(|s| *s != name).count();
        if is_pp(name) {
            PARPOOL[i % PARPOOL.len()]
        } else {
            PEERS[i % PEERS.len()]
        }
    };
    let ratios = groups.iter().flat_map(|g| g.1.iter().map(|b| b.1));
    let (lo, hi) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = (lo / 1.6, hi * 1.6);

    let legend_rows = series.len().max(1) as u32;
    let root = SVGBackend::new(path, (1280, 560.max(90 + 22 * legend_rows))).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(900);
    let mut chart = ChartBuilder::on(&left)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups.len() as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (groups.len() as f64, 1.0)],
        BLACK.stroke_width(1),
    )))?;
    for (g, (label, bars)) in groups.iter().enumerate() {
        let width = 0.8 / bars.len().max(1) as f64;
        chart.draw_series(bars.iter().enumerate().map(|(i, (name, r))| {
            let x0 = g as f64 + 0.1 + i as f64 * width;
            Rectangle::new([(x0, lo), (x0 + width * 0.9, *r)], color(name).filled())
        }))?;
        // parpool's bars carry their ratio.
        chart.draw_series(bars.iter().enumerate().filter(|b| is_pp(&b.1 .0)).map(
            |(i, (_, r))| {
                let x0 = g as f64 + 0.1 + i as f64 * width;
                Text::new(format!("{r:.2}"), (x0, r * 1.12), ("sans-serif", 10))
            },
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (g as f64 + 0.1, hi / 1.15),
            ("sans-serif", 14),
        )))?;
    }
    for (i, name) in series.iter().enumerate() {
        let y = 40 + 22 * i as i32;
        right.draw(&Rectangle::new(
            [(10, y), (24, y + 14)],
            color(name).filled(),
        ))?;
        right.draw(&Text::new(name.clone(), (30, y + 1), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}

fn short(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}
