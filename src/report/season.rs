//! The season's `report.html` (written by `season merge`): the cast of a whole season, one row
//! per season person with their best crop and screen time in each episode. Self-contained and
//! escaped like the run's page: the values come in as plain data, the template escapes every
//! one, and the crops are `data:` URIs of base64.

use askama::Template;

use super::charts::duration;
use super::view::thumbnail;
use super::ReportError;

/// Bytes of inlined crops at most; past them, people are listed without a picture.
const IMAGE_BUDGET: usize = 4 << 20;

/// What the page shows, as `season merge` computed it.
pub struct Cast {
    /// The season's prefix.
    pub season: String,
    /// Episodes in plan order: id and duration.
    pub episodes: Vec<(String, Option<f64>)>,
    /// Season people, in the order to show (most screen time first).
    pub people: Vec<CastPerson>,
}

pub struct CastPerson {
    pub person_id: u64,
    pub name: Option<String>,
    /// Their best crop (the run's 224×112 JPEG), if it could be read.
    pub crop: Option<Vec<u8>>,
    /// Seconds on screen, per episode in plan order.
    pub screen_s: Vec<f64>,
}

struct Row {
    person_id: u64,
    label: String,
    img: Option<String>,
    total: String,
    seen_in: usize,
    cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "season.html")]
struct SeasonPage<'a> {
    season: &'a str,
    episodes: Vec<(String, String)>,
    rows: Vec<Row>,
    total_s: String,
    pictures_left_out: usize,
}

/// The page, as HTML.
pub fn render(cast: &Cast) -> Result<String, ReportError> {
    let mut left = IMAGE_BUDGET;
    let mut pictures_left_out = 0;
    let rows = cast
        .people
        .iter()
        .map(|p| {
            let img = p.crop.as_deref().and_then(|jpeg| thumbnail(jpeg, true, 96, 80)).filter(|img| {
                let fits = img.len() <= left;
                left = if fits { left - img.len() } else { 0 };
                pictures_left_out += usize::from(!fits);
                fits
            });
            Row {
                person_id: p.person_id,
                label: p.name.clone().unwrap_or_else(|| format!("Person {}", p.person_id)),
                img,
                total: duration(p.screen_s.iter().sum()),
                seen_in: p.screen_s.iter().filter(|s| **s > 0.0).count(),
                cells: p.screen_s.iter().map(|s| if *s > 0.0 { duration(*s) } else { String::new() }).collect(),
            }
        })
        .collect();
    let total: f64 = cast.episodes.iter().filter_map(|e| e.1).sum();
    let episodes = cast.episodes.iter().map(|(id, d)| (id.clone(), d.map(duration).unwrap_or_default())).collect();
    SeasonPage { season: &cast.season, episodes, rows, total_s: duration(total), pictures_left_out }
        .render()
        .map_err(|e| ReportError::Render { dir: cast.season.clone().into(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_empty_cells_stay_empty() {
        let cast = Cast {
            season: "s3://b-1/s/".into(),
            episodes: vec![("e<1>".into(), Some(12.0)), ("e2".into(), None)],
            people: vec![CastPerson { person_id: 0, name: Some("<script>x</script>".into()), crop: None, screen_s: vec![4.94, 0.0] }],
        };
        let html = render(&cast).unwrap();
        assert!(!html.contains("<script>x") && html.contains("&#60;script&#62;x"));
        assert!(html.contains(">e&#60;1&#62;<") && html.contains("0:04.9"));
        assert_eq!(html.matches("<td class=\"num\"></td>").count(), 1);
    }
}
