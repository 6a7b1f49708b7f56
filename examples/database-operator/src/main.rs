//! The operator binary: `database-operator --kubeconfig ... -A`.

#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(database_operator::operator(), kopf::Settings::default()).await
}
