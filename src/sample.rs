//! The sample reader: values for the personal fields of an edition shown to a person
//! rather than sent (`brief build`'s files, `brief preview`'s page): the first row of
//! the editors list when there is one, placeholders otherwise.

use crate::config::Config;
use crate::personalize::{Escape, Template, PREFERENCES_URL, UNSUBSCRIBE_URL};
use crate::token;
use std::collections::BTreeMap;

/// The sample values, and the extra columns the lists have.
pub struct SampleReader {
    fields: BTreeMap<String, String>,
    columns: Vec<String>,
}

impl SampleReader {
    pub fn load(config: &Config) -> SampleReader {
        let mut fields = BTreeMap::new();
        fields.insert("email".to_string(), "reader@example.org".to_string());
        fields.insert("name".to_string(), "Reader".to_string());
        let mut columns: Vec<String> = Vec::new();
        let mut lists: Vec<&str> = config
            .newsletter
            .audience
            .iter()
            .map(String::as_str)
            .collect();
        lists.push(&config.newsletter.editors);
        for list in lists {
            let Ok(mut reader) = csv::Reader::from_path(config.list_path(list)) else {
                continue;
            };
            let Ok(headers) = reader.headers().cloned() else {
                continue;
            };
            let headers: Vec<String> = headers
                .iter()
                .map(|h| h.trim_start_matches('\u{FEFF}').trim().to_string())
                .collect();
            for h in &headers {
                if h != "email" && h != "name" && !h.is_empty() && !columns.contains(h) {
                    columns.push(h.clone());
                    fields.insert(h.clone(), format!("[{h}]"));
                }
            }
            if list == config.newsletter.editors {
                if let Some(Ok(row)) = reader.records().next() {
                    for (h, v) in headers.iter().zip(row.iter()) {
                        if !v.trim().is_empty() {
                            fields.insert(h.clone(), v.trim().to_string());
                        }
                    }
                }
            }
        }
        SampleReader { fields, columns }
    }

    /// The extra columns (besides email and name) the lists have.
    pub fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// Fills in a compiled document (MJML, HTML or text) for the sample reader, with an
    /// unsubscribe link that names `placeholder` instead of a real token.
    pub fn fill(&self, config: &Config, doc: &str, escape: Escape, placeholder: &str) -> String {
        let unsubscribe = token::unsubscribe_url(&config.newsletter.base_url, placeholder);
        let preferences = token::preferences_url(&config.newsletter.base_url, placeholder);
        let template = Template::parse(doc);
        let values: Vec<&str> = template
            .fields()
            .iter()
            .map(|f| {
                if f == PREFERENCES_URL {
                    &preferences
                } else {
                    self.value(f, &unsubscribe)
                }
            })
            .collect();
        template.render(&values, escape)
    }

    /// The sample value of a personal field (`unsubscribe_url` or `subscriber.<column>`).
    fn value<'a>(&'a self, field: &str, unsubscribe: &'a str) -> &'a str {
        if field == UNSUBSCRIBE_URL {
            return unsubscribe;
        }
        field
            .strip_prefix("subscriber.")
            .and_then(|column| self.fields.get(column))
            .map_or("", String::as_str)
    }
}
