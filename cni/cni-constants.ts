/** The fixed numbers of the redirection design (reference/ambient-mesh.md §2.2): marks, route tables, rule priorities, tunnel VNIs and /30s, and weft's default names. */

/** Packet marks on the node, each written as `value/mask` exactly as the reference does. */
export const NODE_MARKS = {
  /** Send to weft's outbound listener via the outbound tunnel. */
  outbound: '0x100/0x100',
  /** Route normally (main table). */
  skip: '0x200/0x200',
  /** Skip, and save into conntrack so replies skip too (includes the skip bit). */
  connSkip: '0x220/0x220',
  /** A packet from weft with a spoofed (preserved) source; includes the skip bit. */
  proxy: '0x210/0x210',
  /** A reply to a spoofed connection: back to weft's veth. */
  proxyReturn: '0x040/0x040',
} as const;

/** Marks inside the runtime's namespace. */
export const RUNTIME_MARKS = {
  tproxy: '0x400/0xfff',
  originalSourceReturn: '0x4d3/0xfff',
} as const;

export const ROUTE_TABLES = { inbound: 100, outbound: 101, proxy: 102 } as const;

/** Node rule priorities 100–103 and the runtime namespace's 20000/20003; 32766 is the kernel's main-table rule. */
export const RULE_PRIORITIES = { skip: 100, outbound: 101, proxyReturn: 102, inbound: 103, tproxy: 20000, originalSourceReturn: 20003, main: 32766 } as const;

export const TUNNEL = {
  inboundVni: 1000,
  outboundVni: 1001,
  nodeInboundAddress: '192.168.126.1/30',
  runtimeInboundAddress: '192.168.126.2/30',
  nodeOutboundAddress: '192.168.127.1/30',
  runtimeOutboundAddress: '192.168.127.2/30',
  /** First Geneve UDP port tried (IANA), as Istio 1.19+; VXLAN starts at its IANA port. */
  genevePortBase: 6081,
  vxlanPortBase: 4789,
} as const;

/** Listener ports inside the runtime namespace (DESIGN.md "Ports"). */
export const RUNTIME_PORTS = { hbone: 15008, outbound: 15001, inboundPlaintext: 15006, dns: 15053 } as const;

/** weft's default names; every one is configurable. */
export const DEFAULT_NAMES = {
  ipset: 'weft-pods-ips',
  inboundTunnel: 'weftin',
  outboundTunnel: 'weftout',
  runtimeInboundTunnel: 'pweftin',
  runtimeOutboundTunnel: 'pweftout',
  chainPrefix: 'WEFT',
} as const;

export const TUNNEL_DRIVERS = ['geneve', 'vxlan'] as const;
export type TunnelDriver = (typeof TUNNEL_DRIVERS)[number];
export type TunnelDriverChoice = TunnelDriver | 'auto';

/** CNI spec versions this plugin reads and writes (spec 1.1.0 added STATUS and GC). */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const CURRENT_CNI_VERSION = '1.1.0';

/** The spec's well-known error codes (SPEC.md "Error"). */
export const CNI_ERROR_CODES = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedConnectivity: 51,
} as const;

export const WEFT_CNI_USAGE = [
  'usage: weft-cni                      (the CNI plugin: CNI_COMMAND in the environment, config on stdin)',
  '       weft-cni node setup|cleanup|doctor [--config FILE] [--dry-run]',
  '       weft-cni agent --config FILE          (in-pod mode: the node agent the runtime connects to over ZDS)',
  '       weft-cni install (--plugin-script FILE | --binary FILE) --bin-dir DIR --conf-dir DIR',
  '                        [--plugin-config JSON | --plugin-config-file FILE] [--state-dir DIR] [--watch [--ready-file FILE]]',
  '       weft-cni uninstall --bin-dir DIR --conf-dir DIR [--state-dir DIR]',
].join('\n');
