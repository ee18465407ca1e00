//! The command line's side of the admin API: starting a repair on a running gateway, listing its
//! jobs, and following one with a progress bar.

use std::{process::ExitCode, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli::AdminArgs;

/// How often a followed job is read again.
const POLL: Duration = Duration::from_millis(500);

/// Why a command against a running gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The gateway could not be reached or its answer read.
    #[error("{url}: {message}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What failed.
        message: String,
    },
    /// The gateway refused the request.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The gateway's `error`.
        message: String,
    },
}

/// Exit code of `verify` when the replicas differ.
pub const INCONSISTENT: u8 = 3;

/// What `repair` or `verify` asks for.
pub struct JobRequest {
    /// Query parameters (`node`, `db`, `since`, …).
    pub params: Vec<(&'static str, String)>,
    /// Return once started.
    pub detach: bool,
}

/// `repair` or `verify` (`kind`): starts the job, then follows it unless detached.
pub fn start(admin: &AdminArgs, kind: &str, request: JobRequest) -> ExitCode {
    run(async move {
        let client = Client::new(admin);
        let query = serde_urlencoded::to_string(&request.params).unwrap_or_default();
        let job = client
            .send("POST", &format!("/cluster/{kind}?{query}"))
            .await?;
        let id = text(&job, "id");
        println!("job {id}: {kind} started");
        if request.detach {
            return Ok(ExitCode::SUCCESS);
        }
        follow(&client, &id).await
    })
}

/// `jobs [ID] [--follow | --cancel]`.
pub fn jobs(admin: &AdminArgs, id: Option<String>, follow_it: bool, cancel: bool) -> ExitCode {
    run(async move {
        let client = Client::new(admin);
        match id {
            Some(id) if follow_it => follow(&client, &id).await,
            Some(id) if cancel => {
                let job = client
                    .send("DELETE", &format!("/cluster/jobs/{id}"))
                    .await?;
                println!("job {id}: {}", text(&job, "state"));
                Ok(ExitCode::SUCCESS)
            }
            Some(id) => {
                let job = client.send("GET", &format!("/cluster/jobs/{id}")).await?;
                println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            }
            None => {
                let list = client.send("GET", "/cluster/jobs").await?;
                let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
                if jobs.is_empty() {
                    println!("no jobs");
                }
                for job in jobs {
                    println!(
                        "{}  {:<9} {:<7} {:<12} {}/{} chunks  {} points  started {}{}",
                        text(&job, "id"),
                        text(&job, "state"),
                        text(&job, "kind"),
                        text(&job, "node"),
                        job["chunks_done"],
                        job["chunks_total"],
                        job["points_copied"],
                        text(&job, "started"),
                        job["error"]
                            .as_str()
                            .map(|e| format!("  error: {e}"))
                            .unwrap_or_default()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `node drain|resume|flush NAME`: `action` is the endpoint's last segment.
pub fn node(admin: &AdminArgs, action: &str, name: &str, force: bool) -> ExitCode {
    run(async move {
        let client = Client::new(admin);
        let name_in_path =
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>();
        let query = if force { "?force=true" } else { "" };
        let answer = client
            .send(
                "POST",
                &format!("/cluster/nodes/{name_in_path}/{action}{query}"),
            )
            .await?;
        println!(
            "node {name}: {}, mode {}, {} entries ({} bytes) queued",
            text(&answer, "state"),
            text(&answer, "mode"),
            answer["entries"],
            answer["bytes"]
        );
        Ok(if answer["done"] == Value::Bool(false) {
            eprintln!("influx-gateway: node {name}: its queue is still being replayed");
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Shows the job's progress until it ends; succeeds only if it ends `done`.
async fn follow(client: &Client, id: &str) -> Result<ExitCode, ControlError> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} chunks · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let job = loop {
        let job = client.send("GET", &format!("/cluster/jobs/{id}")).await?;
        bar.set_length(job["chunks_total"].as_u64().unwrap_or(0));
        bar.set_position(job["chunks_done"].as_u64().unwrap_or(0));
        let eta = job["eta_seconds"]
            .as_u64()
            .map(|s| {
                format!(
                    " · ETA {}",
                    humantime::format_duration(Duration::from_secs(s))
                )
            })
            .unwrap_or_default();
        let activity = job["activity"]
            .as_str()
            .map(|a| format!(" · {a}"))
            .unwrap_or_default();
        bar.set_message(format!(
            "{} points · {} points/s{eta}{activity}",
            job["points_copied"], job["points_per_second"]
        ));
        if text(&job, "state") != "running" {
            break job;
        }
        bar.tick();
        actix_web::rt::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    let state = text(&job, "state");
    println!(
        "job {id}: {state}: {} points copied in {} of {} chunks",
        job["points_copied"], job["chunks_done"], job["chunks_total"]
    );
    for warning in job["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", warning.as_str().unwrap_or_default());
    }
    for divergent in job["divergent"].as_array().into_iter().flatten() {
        println!("still differs: {divergent}");
    }
    if let Some(error) = job["error"].as_str() {
        eprintln!("influx-gateway: job {id} {state}: {error}");
    }
    let report = &job["report"];
    for shard in report["shards"].as_array().into_iter().flatten() {
        let divergent = shard["divergent"].as_array().map_or(0, Vec::len);
        println!(
            "shard {}: {} chunks compared, {} not compared (a replica down), {divergent} divergent",
            text(shard, "shard"),
            shard["chunks_compared"],
            shard["chunks_not_compared"]
        );
        for chunk in shard["divergent"].as_array().into_iter().flatten() {
            println!("  differs: {chunk}");
        }
    }
    Ok(match (state.as_str(), report["consistent"].as_bool()) {
        ("done", Some(false)) => {
            println!("replicas are NOT consistent");
            ExitCode::from(INCONSISTENT)
        }
        ("done", Some(true)) => {
            println!("replicas are consistent");
            ExitCode::SUCCESS
        }
        ("done", None) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

fn run(work: impl std::future::Future<Output = Result<ExitCode, ControlError>>) -> ExitCode {
    match actix_web::rt::System::new().block_on(work) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("influx-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Client {
    http: awc::Client,
    base: String,
    authorization: Option<actix_web::http::header::HeaderValue>,
}

impl Client {
    fn new(admin: &AdminArgs) -> Client {
        let authorization = admin.username.as_ref().and_then(|user| {
            crate::auth::basic(&crate::config::NodeCredentials {
                username: user.clone(),
                password: admin.password.clone().unwrap_or_default(),
            })
        });
        Client {
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            base: admin.url.trim_end_matches('/').to_owned(),
            authorization,
        }
    }

    async fn send(&self, method: &str, path: &str) -> Result<Value, ControlError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |message: String| ControlError::Unreachable {
            url: url.clone(),
            message,
        };
        let method = actix_web::http::Method::from_bytes(method.as_bytes())
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = self.http.request(method, &url);
        if let Some(auth) = &self.authorization {
            request = request.insert_header((actix_web::http::header::AUTHORIZATION, auth.clone()));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let body = response
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !response.status().is_success() {
            return Err(ControlError::Refused {
                status: response.status().as_u16(),
                message: value["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
            });
        }
        Ok(value)
    }
}
