/**
 * Several sidecars as one multi-process JAX job, as one public namespace
 * (`import { cluster } from "jaxbridge"`): `cluster.start({numProcesses})`
 * launches N embedded processes on this machine, `cluster.connect(urls)`
 * drives sidecars started with `serve --coordinator ...` on other hosts.
 */
export { startCluster as start, connectCluster as connect, Cluster, ClusterArray, ClusterBrokenError, ClusterProcessDiedError, type ClusterOptions, type ClusterTree, type StartClusterOptions } from "./cluster.js";
