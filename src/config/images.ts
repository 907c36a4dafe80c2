// STUB (integ branch): replaced by the images branch's definitions and validation.
export interface ImageDefinition {
  name: string;
  from: string;
  packages: string[];
  setup?: string;
  env: Record<string, string>;
}

export const DEFAULT_IMAGES: ImageDefinition[] = [
  { name: 'debian-bookworm', from: 'debian:bookworm', packages: [], env: {} },
  {
    name: 'debian-bookworm-services',
    from: 'image:debian-bookworm',
    packages: ['python3', 'curl', 'git', 'jq', 'ca-certificates', 'procps', 'redis-server', 'redis-tools', 'postgresql'],
    env: {},
  },
];
