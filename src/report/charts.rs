//! The report's charts as geometry: bins, bars, lanes, axis ticks and colours computed here,
//! drawn as SVG by the template. Pure and unit-tested; no string here is markup, so every label
//! reaches the page through the template's HTML escaping.

/// Chart width in SVG user units (the SVG scales to its box).
pub const WIDTH: f64 = 1000.0;

/// A number for an SVG attribute: one decimal, no trailing `.0` (the page stays small).
pub fn n(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Seconds as `m:ss` (or `h:mm:ss` from an hour), rounded down to the second.
pub fn mmss(t: f64) -> String {
    let s = t.max(0.0).floor() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

/// A length of time as `m:ss`, with tenths under a minute (`0:04.9`), where whole seconds
/// would make short appearances look alike.
pub fn duration(t: f64) -> String {
    if t < 59.95 {
        mmss_tenths(t + 0.05)
    } else {
        mmss(t.round())
    }
}

/// Seconds as `m:ss.d`, for hover text where tenths matter.
pub fn mmss_tenths(t: f64) -> String {
    let d = (t.max(0.0) * 10.0).floor() as u64;
    format!("{}.{}", mmss(d as f64 / 10.0), d % 10)
}

/// Colours that tell neighbours apart: 12 hand-picked ones (people ranked by screen time get
/// them in order), then hues a golden angle apart.
pub fn colour(rank: usize) -> String {
    const PALETTE: [&str; 12] =
        ["#4269d0", "#efb118", "#ff725c", "#3ca951", "#a463f2", "#ff8ab7", "#6cc5b0", "#9c6b4e", "#97bbf5", "#d1495b", "#7a8c00", "#5d4fa3"];
    match PALETTE.get(rank) {
        Some(c) => (*c).to_string(),
        None => format!("hsl({:.0},55%,48%)", (rank as f64 * 137.508) % 360.0),
    }
}

/// `label` cut to `max` characters with an ellipsis, to fit beside a chart (the full text goes
/// in a hover title).
pub fn clip(label: &str, max: usize) -> String {
    match label.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if label.chars().count() > max => format!("{}…", &label[..i]),
        _ => label.to_string(),
    }
}

/// "Nice" tick positions over `lo..=hi`: about `target` steps of 1, 2 or 5 × 10^k.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Time ticks for an axis in seconds: steps of 1, 2, 5, 10, 15, 30 s, then whole minutes.
pub fn time_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let steps = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];
    let step = steps.into_iter().find(|s| *s >= raw).unwrap_or(3600.0);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// A label on an axis, at `pos` in chart units.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub pos: String,
    pub label: String,
}

/// One column of a histogram: its box (y grows down) and its hover text.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub title: String,
    /// Which series (0 or 1) the column belongs to, for a stacked histogram.
    pub series: usize,
}

/// A histogram (or any column chart) ready to draw in a `WIDTH` × `HEIGHT` plot area.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    pub columns: Vec<Column>,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub x_label: String,
    pub y_label: String,
    /// Said instead of the chart when there was nothing to count.
    pub empty: bool,
}

/// Plot height of column and line charts.
pub const HEIGHT: f64 = 200.0;

/// Counts of `values` in `bins` equal bins over `lo..hi`; values outside fall in the end bins.
pub fn bin(values: impl Iterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins.max(1)];
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    for v in values.filter(|v| v.is_finite()) {
        let i = (((v - lo) / span) * counts.len() as f64).floor();
        let i = (i.max(0.0) as usize).min(counts.len() - 1);
        counts[i] += 1;
    }
    counts
}

/// A stacked histogram of one or two series binned alike over `lo..hi`; the last bin holds
/// everything above `hi`, which its label says.
pub fn histogram(series: &[&[f64]], lo: f64, hi: f64, bins: usize, x_label: &str, unit: &str, names: &[&str]) -> Columns {
    let counts: Vec<Vec<u64>> = series.iter().map(|s| bin(s.iter().copied(), lo, hi, bins)).collect();
    let totals: Vec<u64> = (0..bins).map(|i| counts.iter().map(|c| c[i]).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return Columns { empty: true, x_label: x_label.to_string(), ..Columns::default() };
    }
    let bw = WIDTH / bins as f64;
    let step = (hi - lo) / bins as f64;
    let scale = HEIGHT / max as f64;
    let mut columns = Vec::new();
    for i in 0..bins {
        let mut top = HEIGHT;
        let (a, b) = (lo + step * i as f64, lo + step * (i + 1) as f64);
        let range = if i + 1 == bins { format!("≥ {}{unit}", short(a)) } else { format!("{}–{}{unit}", short(a), short(b)) };
        for (s, c) in counts.iter().enumerate() {
            if c[i] == 0 {
                continue;
            }
            let h = c[i] as f64 * scale;
            top -= h;
            let name = names.get(s).map(|n| format!("{n}: ")).unwrap_or_default();
            columns.push(Column {
                x: n(bw * i as f64 + 0.5),
                y: n(top),
                w: n((bw - 1.0).max(0.5)),
                h: n(h.max(0.5)),
                title: format!("{range}: {name}{}", c[i]),
                series: s,
            });
        }
    }
    let x_ticks = ticks(lo, hi, 8).into_iter().map(|t| Tick { pos: n((t - lo) / (hi - lo) * WIDTH), label: format!("{}{unit}", short(t)) }).collect();
    let y_ticks = ticks(0.0, max as f64, 4).into_iter().map(|t| Tick { pos: n(HEIGHT - t * scale), label: short(t) }).collect();
    Columns { columns, x_ticks, y_ticks, x_label: x_label.to_string(), y_label: "count".into(), empty: false }
}

/// A number for a label: integers as such, small values with up to 2 significant decimals.
pub fn short(x: f64) -> String {
    if x == x.round() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{:.2}", x).trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One horizontal bar: a label on the left, a bar, its value on the right.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub y: String,
    pub w: String,
    /// Where the value's text starts, right of the bar.
    pub vx: String,
    pub label: String,
    /// `label` as drawn, cut to fit left of the bar.
    pub short: String,
    pub value: String,
    pub colour: String,
}

/// A horizontal bar chart: rows of `ROW` units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bars {
    pub bars: Vec<Bar>,
    pub height: String,
    pub empty: bool,
}

pub const ROW: f64 = 22.0;
/// Where bars start (labels sit left of it) and their longest length.
pub const BAR_X: f64 = 260.0;
pub const BAR_MAX: f64 = 600.0;

/// Bars for `(label, value, shown value, colour)` rows, scaled to the largest value.
pub fn bars(rows: Vec<(String, f64, String, String)>) -> Bars {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    bars_to(rows, max)
}

/// Bars scaled so that `max` is the longest: a chart continued from another keeps its scale.
pub fn bars_to(rows: Vec<(String, f64, String, String)>, max: f64) -> Bars {
    let scale = if max > 0.0 { BAR_MAX / max } else { 0.0 };
    let bars: Vec<Bar> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (label, v, value, colour))| {
            let w = (v * scale).max(if v > 0.0 { 1.0 } else { 0.0 });
            Bar { y: n(i as f64 * ROW), w: n(w), vx: n(BAR_X + w + 6.0), short: clip(&label, 34), label, value, colour }
        })
        .collect();
    Bars { height: n(bars.len() as f64 * ROW), empty: bars.is_empty(), bars }
}

/// A line over time: `(x, y)` points in data units mapped to the plot area.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line {
    pub points: String,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub empty: bool,
}

pub fn line(points: &[(f64, f64)], x_is_time: bool) -> Line {
    let (Some(x0), Some(x1)) = (points.first().map(|p| p.0), points.last().map(|p| p.0)) else { return Line { empty: true, ..Line::default() } };
    let ymax = points.iter().map(|p| p.1).fold(0.0, f64::max);
    if x1.partial_cmp(&x0) != Some(std::cmp::Ordering::Greater) || ymax <= 0.0 {
        return Line { empty: true, ..Line::default() };
    }
    let sx = WIDTH / (x1 - x0);
    let sy = HEIGHT / (ymax * 1.1);
    let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", n((x - x0) * sx), n(HEIGHT - y * sy))).collect();
    let xt = if x_is_time { time_ticks(x0, x1, 8) } else { ticks(x0, x1, 8) };
    let x_ticks = xt.into_iter().map(|t| Tick { pos: n((t - x0) * sx), label: if x_is_time { mmss(t) } else { short(t) } }).collect();
    let y_ticks = ticks(0.0, ymax * 1.1, 4).into_iter().map(|t| Tick { pos: n(HEIGHT - t * sy), label: short(t) }).collect();
    Line { points: pts.join(" "), x_ticks, y_ticks, empty: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!((n(3.0), n(2.25), n(-0.04), n(1234.56)), ("3".into(), "2.3".into(), "0".into(), "1234.6".into()));
        assert_eq!((mmss(0.0), mmss(59.9), mmss(61.0), mmss(3725.0)), ("0:00".into(), "0:59".into(), "1:01".into(), "1:02:05".into()));
        assert_eq!(mmss_tenths(61.27), "1:01.2");
        assert_eq!((clip("abcdef", 4), clip("abcd", 4), clip("ééééé", 3)), ("abc…".into(), "abcd".into(), "éé…".into()));
        assert_eq!((duration(4.97), duration(59.97), duration(754.4)), ("0:05.0".into(), "1:00".into(), "12:34".into()));
        assert_eq!((short(4.0), short(0.126), short(12.34), short(0.5)), ("4".into(), "0.13".into(), "12.3".into(), "0.5".into()));
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.5, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!((t[0] - 0.5).abs() < 1e-9 && (t[5] - 1.0).abs() < 1e-9, "{t:?}");
        assert_eq!(time_ticks(0.852, 9.98, 8), vec![2.0, 4.0, 6.0, 8.0]);
        assert_eq!(time_ticks(0.0, 2880.0, 8), vec![0.0, 600.0, 1200.0, 1800.0, 2400.0]);
        assert_eq!(ticks(3.0, 3.0, 5), vec![3.0], "an empty range is one tick");
    }

    #[test]
    fn binning_counts_every_value_once_and_clamps_the_ends() {
        let b = bin([0.0, 0.1, 0.5, 0.99, 1.0, 7.0, -3.0, f64::NAN].into_iter(), 0.0, 1.0, 4);
        assert_eq!(b, vec![3, 0, 1, 3]);
    }

    #[test]
    fn a_histogram_stacks_its_series_and_labels_the_open_end() {
        let h = histogram(&[&[1.0, 1.0, 9.0], &[1.5]], 0.0, 8.0, 4, "size", " px", &["embedded", "skipped"]);
        assert!(!h.empty);
        let first: Vec<&Column> = h.columns.iter().filter(|c| c.x == "0.5").collect();
        assert_eq!(first.len(), 2, "two series in the first bin");
        assert_eq!(first[0].title, "0–2 px: embedded: 2");
        assert_eq!(first[1].y, "0", "the stack reaches the top: its bin has the most");
        assert!(h.columns.iter().any(|c| c.title == "≥ 6 px: embedded: 1"));
        assert!(histogram(&[&[]], 0.0, 1.0, 4, "x", "", &[]).empty);
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let b = bars(vec![
            ("a".into(), 2.0, "2".into(), "#000".into()),
            ("b".into(), 1.0, "1".into(), "#111".into()),
            ("c".into(), 0.0, "0".into(), "#222".into()),
        ]);
        assert_eq!(b.bars.iter().map(|b| b.w.as_str()).collect::<Vec<_>>(), ["600", "300", "0"]);
        assert_eq!(b.height, "66");
        assert!(bars(vec![]).empty);
        assert_eq!(bars_to(vec![("d".into(), 1.0, "1".into(), "#333".into())], 4.0).bars[0].w, "150", "on another chart's scale");
    }

    #[test]
    fn a_line_needs_two_distinct_times() {
        assert!(line(&[], true).empty);
        assert!(line(&[(1.0, 5.0)], true).empty);
        let l = line(&[(0.0, 10.0), (10.0, 20.0)], true);
        assert_eq!(l.points.split(' ').count(), 2);
        assert!(l.points.starts_with("0,"));
    }

    #[test]
    fn colours_differ() {
        let c: std::collections::HashSet<String> = (0..40).map(colour).collect();
        assert_eq!(c.len(), 40);
    }
}
