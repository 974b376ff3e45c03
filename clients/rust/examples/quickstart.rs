//! The README's quick starts, compiled: `cargo run -p rlock-client --example quickstart
//! [redis://127.0.0.1:6379/]` against a server with the module loaded.

use std::time::Duration;

use rlock_client::Lock;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn write_with_fencing(token: u64) -> Result<(), BoxError> {
    println!("writing with fencing token {token}");
    Ok(())
}

async fn do_work(token: u64) -> Result<(), BoxError> {
    println!("working with fencing token {token}");
    Ok(())
}

fn blocking(client: &redis::Client) -> Result<(), BoxError> {
    let mut conn = client.get_connection()?;
    let lock = Lock::new("orders:42")
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(5));
    let guard = lock.acquire(&mut conn)?; // Err(Error::NotAcquired) if still taken after 5 s
    write_with_fencing(guard.token())?; // released when `guard` drops
    Ok(())
}

async fn lease(client: &redis::Client) -> Result<(), BoxError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let guard = Lock::new("orders:42").acquire_async(&mut conn).await?;
    tokio::select! {
        result = do_work(guard.token()) => { guard.release().await?; result }
        () = guard.lost() => Err("lock lost".into()),
    }
}

fn main() -> Result<(), BoxError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let client = redis::Client::open(url)?;
    blocking(&client)?;
    tokio::runtime::Runtime::new()?.block_on(lease(&client))
}
