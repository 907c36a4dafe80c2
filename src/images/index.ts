// The image layer: building environment images and keeping them on disk (IMAGE_DIR). It imports only
// src/config, src/infra and src/domain; the worker, the drivers and the API use it through this file.

export { buildImage, imageStatus, debianMirrorFor, type BuildOptions, type BuildProgress, type BuildStep, type BuiltImage } from './builder';
export { collectGarbage, type GcReport } from './gc';
export {
  acquireVersion,
  listVersions,
  resolveImage,
  resolveVersion,
  type ImageManifest,
  type ResolvedImage,
  type VersionInfo,
} from './store';
export { computeDigests, definitionDigest, type SourceIdentity } from './digest';
export { ImageBuildError, type ImageLogger } from './tool';
