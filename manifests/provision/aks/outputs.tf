output "resource_group_name" {
  description = "Resource group holding everything."
  value       = azurerm_resource_group.this.name
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "kubeconfig_command" {
  description = "Command that merges the cluster's credentials into ~/.kube/config."
  value       = "az aks get-credentials --resource-group ${azurerm_resource_group.this.name} --name ${azurerm_kubernetes_cluster.this.name}"
}

output "oidc_issuer_url" {
  description = "The cluster's OIDC issuer (the federated credential trusts it)."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "acr_name" {
  description = "Name of the container registry (for `az acr login --name`)."
  value       = azurerm_container_registry.this.name
}

output "acr_login_server" {
  description = "Registry host to push to and to pass as the chart's image.registry."
  value       = azurerm_container_registry.this.login_server
}

output "tidescale_identity_client_id" {
  description = "Client id of tidescale's workload identity: the chart's serviceAccount annotation azure.workload.identity/client-id, and `identityId` in azure-workload TriggerAuthentications."
  value       = azurerm_user_assigned_identity.tidescale.client_id
}

output "helm_install_command" {
  description = "helm command installing tidescale from this registry with workload identity wired."
  value = join(" ", [
    "helm upgrade --install tidescale manifests/chart/tidescale --namespace ${var.tidescale_namespace} --create-namespace",
    "--set image.registry=${azurerm_container_registry.this.login_server} --set image.repository=tidescale --set image.tag=<TAG>",
    "--set-string 'serviceAccount.annotations.azure\\.workload\\.identity/client-id=${azurerm_user_assigned_identity.tidescale.client_id}'",
    "--set-string 'podLabels.azure\\.workload\\.identity/use=true'",
  ])
}

output "servicebus_namespace" {
  description = "Name of the sample's Service Bus namespace (null unless create_servicebus)."
  value       = var.create_servicebus ? azurerm_servicebus_namespace.sample[0].name : null
}

output "servicebus_queue" {
  description = "Name of the sample's queue (null unless create_servicebus)."
  value       = var.create_servicebus ? azurerm_servicebus_queue.sample[0].name : null
}

output "servicebus_listen_connection_string" {
  description = "Connection string of the worker's Listen policy on the queue, for the servicebus-worker Secret (null unless create_servicebus)."
  value       = var.create_servicebus ? azurerm_servicebus_queue_authorization_rule.worker_listen[0].primary_connection_string : null
  sensitive   = true
}
