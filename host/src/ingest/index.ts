export { IngestService, type IngestServiceOptions, type IngestTls } from "./service";
export { MessageClassifier, parseStatus, type Outcome, type ClassifierOptions } from "./classify";
export { IngestAccount, UNKNOWN_DEVICE, type DeviceAccount } from "./account";
export { influxStore, StoreRejectedError, type BatchStore, type InfluxStoreOptions } from "./store-writer";
export { deadLetterFile, type DeadLetter, type DeadLetterSink } from "./dead-letter";
export { loadSites } from "./sites";
export * from "./line-protocol";
