//! The console's two languages: English (the keys themselves) and Simplified
//! Chinese. Chosen by the language cookie, else the browser's
//! `Accept-Language`; messages the API gives are shown as it gives them.

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" | "zh-CN" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The first of English and Chinese by the weights of `Accept-Language`
    /// (`zh-CN,zh;q=0.9,en;q=0.8`); English when it names neither.
    pub fn from_accept(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// `text` (an English phrase of the console) in this language.
    pub fn t(self, text: &'static str) -> &'static str {
        match self {
            Lang::En => text,
            Lang::Zh => ZH
                .iter()
                .find(|(en, _)| *en == text)
                .map_or(text, |(_, zh)| zh),
        }
    }
}

/// English phrase → Simplified Chinese.
const ZH: &[(&str, &str)] = &[
    ("Sign in", "登录"),
    ("Sign out", "退出登录"),
    ("Sign out everywhere", "退出所有设备"),
    ("Account name", "用户名"),
    ("Password", "密码"),
    ("Current password", "当前密码"),
    ("New password", "新密码"),
    ("Repeat the new password", "再次输入新密码"),
    ("Change password", "修改密码"),
    ("Set a new password", "设置新密码"),
    (
        "Your password is an initial one: choose your own before you continue.",
        "当前密码为初始密码：请先设置您自己的密码。",
    ),
    (
        "8 to 20 characters, with at least one letter and one digit.",
        "8 到 20 个字符，至少包含一个字母和一个数字。",
    ),
    ("The two new passwords differ.", "两次输入的新密码不一致。"),
    ("Password changed.", "密码已修改。"),
    ("Signed out on every device.", "已在所有设备上退出登录。"),
    ("Projects", "项目"),
    ("Project", "项目"),
    ("New project", "新建项目"),
    ("Create", "创建"),
    ("Name", "名称"),
    ("Public", "公开"),
    ("Private", "私有"),
    ("Access level", "访问级别"),
    ("Anyone may pull", "任何人都可以拉取"),
    ("Created", "创建时间"),
    ("Repositories", "镜像仓库"),
    ("Repository", "镜像仓库"),
    ("Members", "成员"),
    ("Robot accounts", "机器人账户"),
    ("Settings", "配置"),
    ("Tags", "标签"),
    ("Tag", "标签"),
    ("Digest", "摘要"),
    ("Size", "大小"),
    ("Platforms", "平台"),
    ("Pushed", "推送时间"),
    ("Last pull", "最近拉取"),
    ("Pull command", "拉取命令"),
    ("Copy", "复制"),
    ("Copied", "已复制"),
    ("Signatures and referrers", "签名与引用"),
    ("Signed", "已签名"),
    ("Not signed", "未签名"),
    ("Delete", "删除"),
    ("Delete this project", "删除此项目"),
    ("Delete this repository", "删除此镜像仓库"),
    ("Delete this tag?", "删除此标签？"),
    (
        "Delete this repository and all its tags?",
        "删除此镜像仓库及其全部标签？",
    ),
    (
        "Delete this project? It must be empty.",
        "删除此项目？项目必须为空。",
    ),
    ("Make public", "设为公开"),
    ("Make private", "设为私有"),
    (
        "No repositories yet. Push one with:",
        "还没有镜像仓库。推送镜像：",
    ),
    ("No projects yet.", "还没有项目。"),
    ("No tags.", "没有标签。"),
    ("Filter", "筛选"),
    ("Previous", "上一页"),
    ("Next", "下一页"),
    ("Page", "页"),
    ("Role", "角色"),
    ("Add member", "添加成员"),
    ("Add or change", "添加或修改"),
    ("Change role", "修改角色"),
    ("Remove", "移除"),
    ("Remove this member?", "移除此成员？"),
    ("User", "用户"),
    ("Robot name", "机器人名称"),
    ("New robot account", "新建机器人账户"),
    ("Permissions", "权限"),
    ("Expires", "过期时间"),
    ("Never", "永不"),
    ("Revoked", "已吊销"),
    ("Active", "有效"),
    ("Revoke", "吊销"),
    ("Revoke this robot account?", "吊销此机器人账户？"),
    ("Pull only", "仅拉取"),
    ("Pull and push", "拉取和推送"),
    (
        "Copy the secret now: it is shown only once.",
        "请立即复制密钥：它只显示这一次。",
    ),
    ("Secret", "密钥"),
    ("Audit log", "审计日志"),
    ("Time", "时间"),
    ("Actor", "操作者"),
    ("Action", "操作"),
    ("Target", "对象"),
    ("Outcome", "结果"),
    ("Client", "客户端"),
    ("Any", "全部"),
    ("ok", "成功"),
    ("refused", "拒绝"),
    ("failed", "失败"),
    ("Garbage collection", "垃圾回收"),
    ("Status", "状态"),
    ("Running", "运行中"),
    ("Idle", "空闲"),
    ("Last run", "上次运行"),
    ("Last error", "上次错误"),
    ("None yet", "暂无"),
    ("Run now", "立即运行"),
    ("Dry run", "试运行"),
    ("Run garbage collection now?", "立即运行垃圾回收？"),
    ("Earlier runs", "历史运行"),
    (
        "The history of runs appears here once this registry keeps it.",
        "注册中心开始记录运行历史后，会在此处显示。",
    ),
    ("Account", "账户"),
    ("Administration", "系统管理"),
    ("Language", "语言"),
    ("Signed in as", "当前用户"),
    ("system administrator", "系统管理员"),
    ("Your role", "您的角色"),
    ("none", "无"),
    ("Not found", "未找到"),
    ("Refused", "已拒绝"),
    ("Something went wrong", "出错了"),
    ("Back", "返回"),
    (
        "Your session has expired; sign in again.",
        "会话已过期，请重新登录。",
    ),
    (
        "The registry cannot keep your session now; try again shortly.",
        "镜像仓库暂时无法保存会话，请稍后再试。",
    ),
    (
        "The form has expired; reload the page and try again.",
        "表单已过期，请刷新页面后重试。",
    ),
    ("Registry", "镜像仓库服务"),
    ("Menu", "菜单"),
    ("Limit", "条数"),
    ("Since", "起始"),
    ("Blobs deleted", "已删除的数据块"),
    ("Bytes freed", "释放的空间"),
    ("Manifests deleted", "已删除的清单"),
    ("Started", "开始时间"),
    ("Trigger", "触发方式"),
    ("Duration", "耗时"),
    // Apps and the live publish view.
    ("Apps", "应用"),
    ("No apps yet.", "还没有应用。"),
    ("Kind", "类型"),
    ("Latest version", "最新版本"),
    ("Nodes", "节点"),
    ("Node", "节点"),
    ("not published", "未发布"),
    ("New app from Kubernetes YAML", "从 Kubernetes YAML 新建应用"),
    (
        "One workload (Deployment, StatefulSet or DaemonSet) and the Services, Ingresses, ConfigMaps, Secrets and PersistentVolumeClaims labelled app: <name>.",
        "一个工作负载（Deployment、StatefulSet 或 DaemonSet），以及带有 app: <name> 标签的 Service、Ingress、ConfigMap、Secret 和 PersistentVolumeClaim。",
    ),
    ("Manifest", "清单"),
    ("Version history", "版本历史"),
    ("Images", "镜像"),
    ("Publications", "发布状态"),
    ("Clone", "克隆"),
    ("New app name", "新应用名称"),
    ("Publish", "发布"),
    ("Unpublish", "取消发布"),
    ("Version", "版本"),
    ("No nodes registered.", "尚未注册节点。"),
    ("Or every node with the labels", "或所有带有以下标签的节点"),
    ("State", "状态"),
    ("Progress", "进度"),
    ("Updated", "更新时间"),
    ("Not published on any node.", "尚未发布到任何节点。"),
    ("Take the app off this node?", "从此节点上移除该应用？"),
    ("with its resources", "连同其资源"),
    ("resolving", "解析镜像"),
    ("prefetching", "预取中"),
    ("deploying", "部署中"),
    ("running", "运行中"),
    ("removing", "移除中"),
    ("unknown", "未知"),
    (
        "The controller is not enabled on this registry.",
        "此镜像仓库服务未启用控制器。",
    ),
    ("Author", "作者"),
    ("What changed", "变更内容"),
    ("Compare versions", "比较版本"),
    ("From", "从"),
    ("To", "到"),
    ("Compare", "比较"),
    ("Pick two versions the app has.", "请选择该应用已有的两个版本。"),
    ("The two templates are the same.", "两个版本的模板相同。"),
    // Access and storage.
    ("Access and storage", "访问与存储"),
    ("Load balancers", "负载均衡"),
    ("EIPs", "弹性 IP"),
    ("Routes", "路由"),
    ("Config maps", "配置项"),
    ("Secrets", "保密字典"),
    ("Volumes", "存储卷"),
    ("None yet.", "暂无。"),
    ("Spec", "规格"),
    ("On nodes", "所在节点"),
    ("Used by", "使用者"),
    ("Description", "描述"),
    ("type the volume's name", "输入存储卷名称"),
    (
        "This destroys the volume's data on that node, which cannot be recovered. Go ahead?",
        "此操作会销毁该节点上存储卷的数据，且无法恢复。继续吗？",
    ),
    ("Take it off this node?", "从此节点上移除？"),
    ("Release", "释放"),
    ("Unbind", "解除绑定"),
    ("Publish to", "发布到"),
    ("where its apps run", "其应用所在的节点"),
    ("Delete it?", "删除？"),
    ("pending", "等待中"),
    ("waiting", "等待依赖"),
    ("applied", "已生效"),
    ("bound", "已绑定"),
    ("released", "已释放"),
    ("App", "应用"),
    ("Or apps with the labels", "或带有以下标签的应用"),
    ("Type", "类型"),
    ("Ports", "端口"),
    ("Static address", "静态地址"),
    ("From the cluster's pool", "从集群地址池分配"),
    ("Load balancer", "负载均衡"),
    ("Or a container IP", "或容器 IP"),
    ("Or the app with the labels", "或带有以下标签的应用"),
    ("Host", "主机名"),
    ("Path", "路径"),
    ("Port", "端口"),
    ("Data", "数据"),
    ("Key", "键"),
    ("Value", "值"),
    ("Show the values", "显示值"),
    (
        "Values are sealed as they arrive; no page or API answer shows them again.",
        "值在收到时即被加密保存；任何页面或 API 应答都不会再显示它们。",
    ),
    ("Capacity", "容量"),
    ("Storage class", "存储类"),
    // Logs, clusters and nodes.
    ("Logs", "日志"),
    ("Lines before following", "跟随前显示的行数"),
    ("Follow", "跟随"),
    ("Following the log of node", "正在跟随节点日志："),
    ("Clusters and nodes", "集群与节点"),
    ("Cluster", "集群"),
    ("Clusters", "集群"),
    ("Labels", "标签"),
    ("Edge cache", "边缘缓存"),
    ("Kubeconfig", "Kubeconfig"),
    ("Save", "保存"),
    ("logs", "日志"),
    ("Export", "导出"),
    (
        "Delete this node? Nothing may be published on it.",
        "删除此节点？节点上不能有任何发布。",
    ),
    ("API server", "API 服务器"),
    ("EIP pool", "弹性 IP 地址池"),
    (
        "Delete this cluster? It must have no nodes.",
        "删除此集群？集群中不能有节点。",
    ),
    ("Register a cluster", "注册集群"),
    ("Register", "注册"),
    ("Register a node", "注册节点"),
    ("Edge cache URL", "边缘缓存地址"),
    ("Edge logs token", "边缘日志令牌"),
    (
        "The edge's edge.controller_token: lets the registry read the node's container logs.",
        "边缘节点的 edge.controller_token：用于让镜像仓库服务读取节点上的容器日志。",
    ),
    // A node's page and its edge cache.
    ("Used", "已用"),
    ("Hit rate", "命中率"),
    ("no requests yet", "尚无请求"),
    ("hits", "命中"),
    ("misses", "未命中"),
    ("Upstream", "上游"),
    ("reachable", "可达"),
    ("unreachable", "不可达"),
    ("Pinned images", "固定的镜像"),
    ("No pinned images.", "没有固定的镜像。"),
    ("Prefetch jobs", "预取任务"),
    ("No prefetch jobs.", "没有预取任务。"),
    ("Job", "任务"),
    ("Cached", "已缓存"),
    ("pinned", "已固定"),
    (
        "The node's edge cache does not answer:",
        "该节点的边缘缓存没有响应：",
    ),
    // The app form.
    ("Or from a form", "或通过表单创建"),
    ("New app", "新建应用"),
    ("Replicas", "副本数"),
    ("Image", "镜像"),
    ("Container name", "容器名称"),
    ("the app's name", "应用名称"),
    ("Container ports", "容器端口"),
    ("Environment", "环境变量"),
    ("Mounts", "挂载"),
    ("Mounted resource", "挂载的资源"),
    ("Path in the container", "容器内路径"),
    ("Environment from", "环境变量来源"),
    ("Created with it", "一并创建"),
    ("A load balancer on port", "负载均衡，端口"),
    ("Load balancer port", "负载均衡端口"),
    (
        "An EIP in front of it (blank: from the cluster's pool)",
        "其前端的弹性 IP（留空：从集群地址池分配）",
    ),
    ("config map", "配置项"),
    ("secret", "保密字典"),
    ("volume", "存储卷"),
    ("The app was created; this was not:", "应用已创建，但以下未能创建："),
    ("No config maps or secrets in this project.", "此项目中没有配置项或保密字典。"),
    ("Schedule (CronJob)", "调度周期（CronJob）"),
    ("Container", "容器"),
    ("Add a container", "添加容器"),
    ("Remove this container", "移除此容器"),
    ("Edit", "编辑"),
    ("A new version of", "新版本："),
    ("a new image, one more variable", "新镜像，新增一个变量"),
    ("Save as a new version", "保存为新版本"),
    ("Cancel", "取消"),
    ("pod volume", "Pod 存储卷"),
    ("from", "基于"),
    ("New version from this one", "基于此版本创建新版本"),
    ("You may look at it but not change it.", "您可以查看，但不能修改。"),
    (
        "Give every value again: the data sent replaces the old, whose values are never shown.",
        "请重新填写每个值：提交的数据将替换原有数据，原有的值不会再显示。",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_known_language() {
        assert_eq!(Lang::from_accept("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept("en-US,en;q=0.9,zh;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept("fr;q=1, zh;q=0.5"), Lang::Zh);
        assert_eq!(Lang::from_accept(""), Lang::En);
        assert_eq!(Lang::Zh.t("Projects"), "项目");
        assert_eq!(Lang::Zh.t("unknown phrase"), "unknown phrase");
    }

    #[test]
    fn every_phrase_has_one_translation() {
        for (i, (en, _)) in ZH.iter().enumerate() {
            assert!(!ZH[..i].iter().any(|(e, _)| e == en), "{en} twice");
        }
    }
}
