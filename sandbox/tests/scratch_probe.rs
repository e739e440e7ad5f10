mod common;
#[tokio::test]
async fn probe() {
    let env = common::start().await;
    let out = env.kubectl(&["create", "configmap", "x", "--from-literal=a=b", "-v=9"]).await;
    println!("{}", String::from_utf8_lossy(&out.stderr));
}
