//! `mydata-sandbox`: the MyData platform's test environment for local development and tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use mydata_sandbox::{Client, Config, Sandbox};

#[derive(Parser)]
#[command(about = "MyData platform sandbox (test environment for service providers)")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    #[arg(long, default_value = "corpus/mydata/datasets.toml")]
    datasets: PathBuf,
    #[arg(long, default_value = "corpus/mydata/synthetic_residents.toml")]
    residents: PathBuf,
    /// Multiply provider delays (1.0 = the platform's: tax data 60 min).
    #[arg(long, default_value_t = 1.0)]
    delay_scale: f64,
    /// The registered service: client id, secret, name, purpose, callback prefix.
    #[arg(long, default_value = "hotline-assistant")]
    client_id: String,
    /// The client secret (default: $MYDATA_CLIENT_SECRET).
    #[arg(long)]
    client_secret: Option<String>,
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    return_url_prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let cli = Cli::parse();
    let mut cfg = Config::from_files(&cli.datasets, &cli.residents)?;
    cfg.delay_scale = cli.delay_scale;
    cfg.clients.push(Client {
        client_id: cli.client_id,
        client_secret: match cli
            .client_secret
            .or_else(|| std::env::var("MYDATA_CLIENT_SECRET").ok())
        {
            Some(s) => s,
            None => anyhow::bail!("give --client-secret or set MYDATA_CLIENT_SECRET"),
        },
        name: "1999 市民服務助理".into(),
        purpose: "預先填寫您申請的表單，減少您準備紙本證明".into(),
        return_url_prefix: cli.return_url_prefix,
        allowed_ips: vec!["127.0.0.1".into(), "::1".into()],
    });
    tracing::info!(addr = %cli.addr, "MyData sandbox listening");
    mydata_sandbox::serve(Sandbox::new(cfg), cli.addr).await
}
