/**
 * The CSI messages (csi.proto, package csi.v1) as @grpc/proto-loader hands them over with the options
 * of ./load.ts: `{ keepCase: false, longs: String, enums: String, defaults: true, oneofs: true }`.
 *
 * Requests are typed as a server receives them (checked by a round trip through grpc-js):
 * - field names are camelCase;
 * - every scalar is present, absent ones as their default: '' for strings, false for bools, 0 for
 *   int32, '0' for int64 (int64 arrives as a decimal string);
 * - maps arrive as {} and repeated fields as [] when absent;
 * - a message field that is absent arrives as null (the property exists);
 * - enums arrive as their names; a number this proto does not know arrives as that number;
 * - a oneof adds a field naming the member that is set (`accessType: 'mount'`); the member set is an
 *   object, the other members are not there at all; with no member set, neither the naming field
 *   nor any member is there.
 *
 * Responses are typed as a server may return them: a field is optional unless the spec marks it
 * REQUIRED (proto3 sends nothing for a default anyway), optional message fields may be null, int64
 * may be a number or a decimal string, enums are given by name, and a oneof takes exactly one of
 * its members.
 */

// ---- shared pieces ----

/** An int64 as received: a decimal string ('0' when absent). */
export type Int64 = string;
/** An int64 as returned: a number (exact up to 2^53) or a decimal string. */
export type Int64Out = number | string;
/** A string-to-string map (parameters, secrets, contexts, topology segments). */
export type StringMap = Record<string, string>;
/** A message with no fields. */
export type Empty = Record<string, never>;

/** google.protobuf.Timestamp as returned. */
export interface TimestampOut {
  seconds?: Int64Out;
  nanos?: number;
}

/** google.protobuf.BoolValue as returned: unset (null) differs from false. */
export interface BoolValueOut {
  value?: boolean;
}

/** google.protobuf.Int64Value as returned. */
export interface Int64ValueOut {
  value?: Int64Out;
}

// ---- enums ----

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export type PluginServiceType =
  | 'UNKNOWN'
  | 'CONTROLLER_SERVICE'
  | 'VOLUME_ACCESSIBILITY_CONSTRAINTS'
  | 'GROUP_CONTROLLER_SERVICE'
  | 'SNAPSHOT_METADATA_SERVICE';

export type VolumeExpansionType = 'UNKNOWN' | 'ONLINE' | 'OFFLINE';

export type ControllerRpcType =
  | 'UNKNOWN'
  | 'CREATE_DELETE_VOLUME'
  | 'PUBLISH_UNPUBLISH_VOLUME'
  | 'LIST_VOLUMES'
  | 'GET_CAPACITY'
  | 'CREATE_DELETE_SNAPSHOT'
  | 'LIST_SNAPSHOTS'
  | 'CLONE_VOLUME'
  | 'PUBLISH_READONLY'
  | 'EXPAND_VOLUME'
  | 'LIST_VOLUMES_PUBLISHED_NODES'
  | 'VOLUME_CONDITION'
  | 'GET_VOLUME'
  | 'SINGLE_NODE_MULTI_WRITER'
  | 'MODIFY_VOLUME'
  | 'GET_SNAPSHOT';

export type NodeRpcType =
  | 'UNKNOWN'
  | 'STAGE_UNSTAGE_VOLUME'
  | 'GET_VOLUME_STATS'
  | 'EXPAND_VOLUME'
  | 'VOLUME_CONDITION'
  | 'SINGLE_NODE_MULTI_WRITER'
  | 'VOLUME_MOUNT_GROUP';

export type VolumeUsageUnit = 'UNKNOWN' | 'BYTES' | 'INODES';

// ---- sub-messages as received (inside requests) ----

export type BlockVolume = Empty;

export interface MountVolume {
  fsType: string;
  mountFlags: string[];
  volumeMountGroup: string;
}

export interface AccessMode {
  mode: AccessModeName | number;
}

/** VolumeCapability as received: `accessType` names the oneof member that is set, if any. */
export type VolumeCapability = { accessMode: AccessMode | null } & (
  | { accessType: 'block'; block: BlockVolume; mount?: undefined }
  | { accessType: 'mount'; mount: MountVolume; block?: undefined }
  | { accessType?: undefined; block?: undefined; mount?: undefined }
);

export interface CapacityRange {
  requiredBytes: Int64;
  limitBytes: Int64;
}

export interface Topology {
  segments: StringMap;
}

export interface TopologyRequirement {
  requisite: Topology[];
  preferred: Topology[];
}

/** VolumeContentSource as received: `type` names the oneof member that is set, if any. */
export type VolumeContentSource =
  | { type: 'snapshot'; snapshot: { snapshotId: string }; volume?: undefined }
  | { type: 'volume'; volume: { volumeId: string }; snapshot?: undefined }
  | { type?: undefined; snapshot?: undefined; volume?: undefined };

// ---- sub-messages as returned (inside responses) ----

export interface MountVolumeOut {
  fsType?: string;
  mountFlags?: string[];
  volumeMountGroup?: string;
}

/** VolumeCapability as returned (ValidateVolumeCapabilities echoes them): one access type at most. */
export type VolumeCapabilityOut = { accessMode?: { mode?: AccessModeName } | null } & (
  | { block: BlockVolume; mount?: undefined }
  | { mount: MountVolumeOut; block?: undefined }
  | { block?: undefined; mount?: undefined }
);

export interface TopologyOut {
  segments?: StringMap;
}

export type VolumeContentSourceOut =
  | { snapshot: { snapshotId?: string }; volume?: undefined }
  | { volume: { volumeId?: string }; snapshot?: undefined };

export interface Volume {
  capacityBytes?: Int64Out;
  /** Required by the spec. */
  volumeId: string;
  volumeContext?: StringMap;
  contentSource?: VolumeContentSourceOut | null;
  accessibleTopology?: TopologyOut[];
}

export interface Snapshot {
  sizeBytes?: Int64Out;
  /** Required by the spec. */
  snapshotId: string;
  /** Required by the spec. */
  sourceVolumeId: string;
  /** Required by the spec. */
  creationTime: TimestampOut;
  /** Required by the spec. */
  readyToUse: boolean;
  groupSnapshotId?: string;
}

export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}

export interface VolumeUsage {
  available?: Int64Out;
  total?: Int64Out;
  used?: Int64Out;
  /** Required by the spec. */
  unit: VolumeUsageUnit;
}

/** A plugin capability: exactly one of `service` and `volumeExpansion`. */
export type PluginCapability =
  | { service: { type?: PluginServiceType }; volumeExpansion?: undefined }
  | { volumeExpansion: { type?: VolumeExpansionType }; service?: undefined };

export interface ControllerServiceCapability {
  rpc: { type?: ControllerRpcType };
}

export interface NodeServiceCapability {
  rpc: { type?: NodeRpcType };
}

export interface VolumeStatus {
  publishedNodeIds?: string[];
  volumeCondition?: VolumeCondition | null;
}

// ---- Identity ----

export type GetPluginInfoRequest = Empty;

export interface GetPluginInfoResponse {
  name: string;
  vendorVersion: string;
  manifest?: StringMap;
}

export type GetPluginCapabilitiesRequest = Empty;

export interface GetPluginCapabilitiesResponse {
  capabilities?: PluginCapability[];
}

export type ProbeRequest = Empty;

export interface ProbeResponse {
  /** Unset means ready. */
  ready?: BoolValueOut | null;
}

// ---- Controller ----

export interface CreateVolumeRequest {
  name: string;
  capacityRange: CapacityRange | null;
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  /** Secret: never log. */
  secrets: StringMap;
  volumeContentSource: VolumeContentSource | null;
  accessibilityRequirements: TopologyRequirement | null;
  mutableParameters: StringMap;
}

export interface CreateVolumeResponse {
  volume: Volume;
}

export interface DeleteVolumeRequest {
  volumeId: string;
  /** Secret: never log. */
  secrets: StringMap;
}

export type DeleteVolumeResponse = Empty;

export interface ControllerPublishVolumeRequest {
  volumeId: string;
  nodeId: string;
  volumeCapability: VolumeCapability | null;
  readonly: boolean;
  /** Secret: never log. */
  secrets: StringMap;
  volumeContext: StringMap;
}

export interface ControllerPublishVolumeResponse {
  publishContext?: StringMap;
}

export interface ControllerUnpublishVolumeRequest {
  volumeId: string;
  /** '' means every node the volume is published to. */
  nodeId: string;
  /** Secret: never log. */
  secrets: StringMap;
}

export type ControllerUnpublishVolumeResponse = Empty;

export interface ValidateVolumeCapabilitiesRequest {
  volumeId: string;
  volumeContext: StringMap;
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  /** Secret: never log. */
  secrets: StringMap;
  mutableParameters: StringMap;
}

export interface ValidateVolumeCapabilitiesResponse {
  /** Set only when everything asked for is supported. */
  confirmed?: {
    volumeContext?: StringMap;
    volumeCapabilities: VolumeCapabilityOut[];
    parameters?: StringMap;
    mutableParameters?: StringMap;
  } | null;
  message?: string;
}

export interface ListVolumesRequest {
  maxEntries: number;
  startingToken: string;
}

export interface ListVolumesResponse {
  entries?: { volume: Volume; status?: VolumeStatus | null }[];
  nextToken?: string;
}

export interface ControllerGetVolumeRequest {
  volumeId: string;
}

export interface ControllerGetVolumeResponse {
  volume: Volume;
  status: VolumeStatus;
}

export interface ControllerModifyVolumeRequest {
  volumeId: string;
  /** Secret: never log. */
  secrets: StringMap;
  mutableParameters: StringMap;
}

export type ControllerModifyVolumeResponse = Empty;

export interface GetCapacityRequest {
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  accessibleTopology: Topology | null;
}

export interface GetCapacityResponse {
  availableCapacity?: Int64Out;
  maximumVolumeSize?: Int64ValueOut | null;
  minimumVolumeSize?: Int64ValueOut | null;
}

export type ControllerGetCapabilitiesRequest = Empty;

export interface ControllerGetCapabilitiesResponse {
  capabilities?: ControllerServiceCapability[];
}

export interface CreateSnapshotRequest {
  sourceVolumeId: string;
  name: string;
  /** Secret: never log. */
  secrets: StringMap;
  parameters: StringMap;
}

export interface CreateSnapshotResponse {
  snapshot: Snapshot;
}

export interface DeleteSnapshotRequest {
  snapshotId: string;
  /** Secret: never log. */
  secrets: StringMap;
}

export type DeleteSnapshotResponse = Empty;

export interface ListSnapshotsRequest {
  maxEntries: number;
  startingToken: string;
  sourceVolumeId: string;
  snapshotId: string;
  /** Secret: never log. */
  secrets: StringMap;
}

export interface ListSnapshotsResponse {
  entries?: { snapshot: Snapshot }[];
  nextToken?: string;
}

export interface GetSnapshotRequest {
  snapshotId: string;
  /** Secret: never log. */
  secrets: StringMap;
}

export interface GetSnapshotResponse {
  snapshot: Snapshot;
}

export interface ControllerExpandVolumeRequest {
  volumeId: string;
  capacityRange: CapacityRange | null;
  /** Secret: never log. */
  secrets: StringMap;
  volumeCapability: VolumeCapability | null;
}

export interface ControllerExpandVolumeResponse {
  capacityBytes: Int64Out;
  nodeExpansionRequired: boolean;
}

// ---- Node ----

export interface NodeStageVolumeRequest {
  volumeId: string;
  publishContext: StringMap;
  stagingTargetPath: string;
  volumeCapability: VolumeCapability | null;
  /** Secret: never log. */
  secrets: StringMap;
  volumeContext: StringMap;
}

export type NodeStageVolumeResponse = Empty;

export interface NodeUnstageVolumeRequest {
  volumeId: string;
  stagingTargetPath: string;
}

export type NodeUnstageVolumeResponse = Empty;

export interface NodePublishVolumeRequest {
  volumeId: string;
  publishContext: StringMap;
  stagingTargetPath: string;
  targetPath: string;
  volumeCapability: VolumeCapability | null;
  readonly: boolean;
  /** Secret: never log. */
  secrets: StringMap;
  volumeContext: StringMap;
}

export type NodePublishVolumeResponse = Empty;

export interface NodeUnpublishVolumeRequest {
  volumeId: string;
  targetPath: string;
}

export type NodeUnpublishVolumeResponse = Empty;

export interface NodeGetVolumeStatsRequest {
  volumeId: string;
  volumePath: string;
  stagingTargetPath: string;
}

export interface NodeGetVolumeStatsResponse {
  usage?: VolumeUsage[];
  volumeCondition?: VolumeCondition | null;
}

export interface NodeExpandVolumeRequest {
  volumeId: string;
  volumePath: string;
  capacityRange: CapacityRange | null;
  stagingTargetPath: string;
  volumeCapability: VolumeCapability | null;
  /** Secret: never log. */
  secrets: StringMap;
}

export interface NodeExpandVolumeResponse {
  capacityBytes?: Int64Out;
}

export type NodeGetCapabilitiesRequest = Empty;

export interface NodeGetCapabilitiesResponse {
  capabilities?: NodeServiceCapability[];
}

export type NodeGetInfoRequest = Empty;

export interface NodeGetInfoResponse {
  nodeId: string;
  /** 0 (or unset) means no limit. */
  maxVolumesPerNode?: Int64Out;
  accessibleTopology?: TopologyOut | null;
}

// ---- services: method name -> [request as received, response as returned] ----

export interface IdentityMethods {
  GetPluginInfo: [GetPluginInfoRequest, GetPluginInfoResponse];
  GetPluginCapabilities: [GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse];
  Probe: [ProbeRequest, ProbeResponse];
}

export interface ControllerMethods {
  CreateVolume: [CreateVolumeRequest, CreateVolumeResponse];
  DeleteVolume: [DeleteVolumeRequest, DeleteVolumeResponse];
  ControllerPublishVolume: [ControllerPublishVolumeRequest, ControllerPublishVolumeResponse];
  ControllerUnpublishVolume: [ControllerUnpublishVolumeRequest, ControllerUnpublishVolumeResponse];
  ValidateVolumeCapabilities: [ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse];
  ListVolumes: [ListVolumesRequest, ListVolumesResponse];
  GetCapacity: [GetCapacityRequest, GetCapacityResponse];
  ControllerGetCapabilities: [ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse];
  CreateSnapshot: [CreateSnapshotRequest, CreateSnapshotResponse];
  DeleteSnapshot: [DeleteSnapshotRequest, DeleteSnapshotResponse];
  ListSnapshots: [ListSnapshotsRequest, ListSnapshotsResponse];
  GetSnapshot: [GetSnapshotRequest, GetSnapshotResponse];
  ControllerExpandVolume: [ControllerExpandVolumeRequest, ControllerExpandVolumeResponse];
  ControllerGetVolume: [ControllerGetVolumeRequest, ControllerGetVolumeResponse];
  ControllerModifyVolume: [ControllerModifyVolumeRequest, ControllerModifyVolumeResponse];
}

export interface NodeMethods {
  NodeStageVolume: [NodeStageVolumeRequest, NodeStageVolumeResponse];
  NodeUnstageVolume: [NodeUnstageVolumeRequest, NodeUnstageVolumeResponse];
  NodePublishVolume: [NodePublishVolumeRequest, NodePublishVolumeResponse];
  NodeUnpublishVolume: [NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse];
  NodeGetVolumeStats: [NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse];
  NodeExpandVolume: [NodeExpandVolumeRequest, NodeExpandVolumeResponse];
  NodeGetCapabilities: [NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse];
  NodeGetInfo: [NodeGetInfoRequest, NodeGetInfoResponse];
}

export interface ServiceMethods {
  Identity: IdentityMethods;
  Controller: ControllerMethods;
  Node: NodeMethods;
}

export type ServiceName = keyof ServiceMethods;
