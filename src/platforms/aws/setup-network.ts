import {
  AssociateRouteTableCommand,
  AttachInternetGatewayCommand,
  AuthorizeSecurityGroupEgressCommand,
  CreateInternetGatewayCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeAvailabilityZonesCommand,
  DescribeInternetGatewaysCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcAttributeCommand,
  DescribeVpcsCommand,
  EC2Client,
  Filter,
  ModifySubnetAttributeCommand,
  ModifyVpcAttributeCommand,
  ResourceType,
  RevokeSecurityGroupIngressCommand,
} from '@aws-sdk/client-ec2';
import { SetupStep } from './setup-step';

/**
 * The bots' network, as the seed's setup creates it: a VPC with two public subnets in two availability
 * zones, an internet gateway with a default route (no NAT gateway: tasks get public IPs), and a security
 * group that lets everything out and nothing in (bots only ever open connections). Each piece is found by
 * its Name tag (or attachment) before anything is created, so running again changes nothing.
 */
export interface Network {
  subnetIds: string[];
  securityGroupId?: string;
}

const VPC_CIDR = '10.42.0.0/16';
const SUBNET_CIDRS = ['10.42.0.0/20', '10.42.16.0/20'];

export async function ensureNetwork(ec2: EC2Client, name: string, step: SetupStep): Promise<Network> {
  const tags = (type: ResourceType, value: string) => [{ ResourceType: type, Tags: [{ Key: 'Name', Value: value }] }];
  const vpcId = await step.ensure(
    `VPC ${name}`,
    async () =>
      (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'tag:Name', Values: [name] }] }))).Vpcs?.[0]?.VpcId,
    async () =>
      (await ec2.send(new CreateVpcCommand({ CidrBlock: VPC_CIDR, TagSpecifications: tags('vpc', name) }))).Vpc!.VpcId!,
  );

  /** What a Describe call finds in our VPC with one more filter; nothing while the VPC does not exist. */
  const inVpc = async <T>(key: string, value: string, describe: (filters: Filter[]) => Promise<T | undefined>) =>
    vpcId
      ? describe([
          { Name: 'vpc-id', Values: [vpcId] },
          { Name: key, Values: [value] },
        ])
      : undefined;

  // DNS hostnames as in a default VPC: the tasks' network interfaces get DNS names.
  const dnsHostnames = vpcId
    ? (await ec2.send(new DescribeVpcAttributeCommand({ VpcId: vpcId, Attribute: 'enableDnsHostnames' })))
        .EnableDnsHostnames?.Value
    : true;
  if (vpcId && !dnsHostnames) {
    await step.update(`VPC ${name}: DNS hostnames`, () =>
      ec2.send(new ModifyVpcAttributeCommand({ VpcId: vpcId, EnableDnsHostnames: { Value: true } })),
    );
  }

  const zones = (
    await ec2.send(new DescribeAvailabilityZonesCommand({ Filters: [{ Name: 'state', Values: ['available'] }] }))
  )
    .AvailabilityZones!.map((zone) => zone.ZoneName!)
    .sort()
    .slice(0, 2);
  const subnetIds: string[] = [];
  for (const [index, cidr] of SUBNET_CIDRS.entries()) {
    const subnetName = `${name}-public-${index + 1}`;
    const findSubnet = () =>
      inVpc(
        'tag:Name',
        subnetName,
        async (Filters) => (await ec2.send(new DescribeSubnetsCommand({ Filters }))).Subnets?.[0],
      );
    const subnetId = await step.ensure(
      `subnet ${subnetName} (${zones[index % zones.length]})`,
      async () => (await findSubnet())?.SubnetId,
      async () =>
        (
          await ec2.send(
            new CreateSubnetCommand({
              VpcId: vpcId!,
              CidrBlock: cidr,
              AvailabilityZone: zones[index % zones.length],
              TagSpecifications: tags('subnet', subnetName),
            }),
          )
        ).Subnet!.SubnetId!,
    );
    if (!subnetId) continue;
    subnetIds.push(subnetId);
    if (!(await findSubnet())?.MapPublicIpOnLaunch) {
      await step.update(`subnet ${subnetName}: public IPs on launch`, () =>
        ec2.send(new ModifySubnetAttributeCommand({ SubnetId: subnetId, MapPublicIpOnLaunch: { Value: true } })),
      );
    }
  }

  const gatewayId = await step.ensure(
    `internet gateway ${name}`,
    async () =>
      vpcId
        ? (
            await ec2.send(
              new DescribeInternetGatewaysCommand({ Filters: [{ Name: 'attachment.vpc-id', Values: [vpcId] }] }),
            )
          ).InternetGateways?.[0]?.InternetGatewayId
        : undefined,
    async () => {
      const id = (
        await ec2.send(new CreateInternetGatewayCommand({ TagSpecifications: tags('internet-gateway', name) }))
      ).InternetGateway!.InternetGatewayId!;
      await ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: id, VpcId: vpcId! }));
      return id;
    },
  );

  const routeTableName = `${name}-public`;
  const findRouteTable = () =>
    inVpc(
      'tag:Name',
      routeTableName,
      async (Filters) => (await ec2.send(new DescribeRouteTablesCommand({ Filters }))).RouteTables?.[0],
    );
  const routeTableId = await step.ensure(
    `route table ${routeTableName}`,
    async () => (await findRouteTable())?.RouteTableId,
    async () =>
      (
        await ec2.send(
          new CreateRouteTableCommand({ VpcId: vpcId!, TagSpecifications: tags('route-table', routeTableName) }),
        )
      ).RouteTable!.RouteTableId!,
  );
  const routeTable = await findRouteTable();
  if (routeTableId && gatewayId && !routeTable?.Routes?.some((route) => route.DestinationCidrBlock === '0.0.0.0/0')) {
    await step.update(`route table ${routeTableName}: default route to the internet gateway`, () =>
      ec2.send(
        new CreateRouteCommand({ RouteTableId: routeTableId, DestinationCidrBlock: '0.0.0.0/0', GatewayId: gatewayId }),
      ),
    );
  }
  for (const subnetId of subnetIds) {
    if (routeTableId && !routeTable?.Associations?.some((association) => association.SubnetId === subnetId)) {
      await step.update(`route table ${routeTableName}: associate ${subnetId}`, () =>
        ec2.send(new AssociateRouteTableCommand({ RouteTableId: routeTableId, SubnetId: subnetId })),
      );
    }
  }

  const findGroup = () =>
    inVpc(
      'group-name',
      name,
      async (Filters) => (await ec2.send(new DescribeSecurityGroupsCommand({ Filters }))).SecurityGroups?.[0],
    );
  const securityGroupId = await step.ensure(
    `security group ${name} (outbound only)`,
    async () => (await findGroup())?.GroupId,
    async () =>
      (
        await ec2.send(
          new CreateSecurityGroupCommand({
            GroupName: name,
            Description: 'meeboter bots: all outbound, no inbound',
            VpcId: vpcId!,
            TagSpecifications: tags('security-group', name),
          }),
        )
      ).GroupId!,
  );
  const group = await findGroup();
  if (securityGroupId && group) {
    if (group.IpPermissions?.length) {
      await step.update(`security group ${name}: remove inbound rules`, () =>
        ec2.send(
          new RevokeSecurityGroupIngressCommand({ GroupId: securityGroupId, IpPermissions: group.IpPermissions }),
        ),
      );
    }
    const allOut = group.IpPermissionsEgress?.some(
      (rule) => rule.IpProtocol === '-1' && rule.IpRanges?.some((range) => range.CidrIp === '0.0.0.0/0'),
    );
    if (!allOut) {
      await step.update(`security group ${name}: allow all outbound`, () =>
        ec2.send(
          new AuthorizeSecurityGroupEgressCommand({
            GroupId: securityGroupId,
            IpPermissions: [{ IpProtocol: '-1', IpRanges: [{ CidrIp: '0.0.0.0/0' }] }],
          }),
        ),
      );
    }
  }
  return { subnetIds, securityGroupId };
}
